"""Neuroevolution potentials: CPU evaluation (calorine), committees and exploration, no AiiDA import."""

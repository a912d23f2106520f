"""AiiDA plugin for machine-learned-potential campaigns."""

__version__ = "0.1.0"

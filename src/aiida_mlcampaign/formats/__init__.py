"""Plain readers and writers of the files the codes read and write; no AiiDA import.

Frames (``frames``, ``extxyz``, ``qe``), GPUMD inputs and outputs (``gpumd``, ``gpumd_run``, ``gpumd_model``),
NEP (``nep``: ``nep.in``, ``nep.txt``, training outputs; ``neppo``), MTP (``mtp``, ``mlip_cfg``, ``mlip2``,
``motep``), SLURM accounting (``slurm``) and safe text output (``textio``). Errors name the file and line.
"""

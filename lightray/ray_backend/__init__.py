"""The Ray backend: runs a Trainer's stages on Ray Train workers.

``launcher.py`` is the driver side (``RayLauncher``), ``worker.py`` what each worker runs; ``options.py`` the
Trainer's Ray options, ``config.py`` Ray's config classes built from them, ``placement.py`` the checks that
they can ever be placed; ``channel.py`` the driver's channel for progress and results (``history.py`` its
logger); ``user_code.py`` which code travels to Ray's processes by value.
"""

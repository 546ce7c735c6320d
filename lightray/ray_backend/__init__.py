"""The Ray backend: runs a Trainer's stages on Ray Train workers.

``launcher.py`` is the driver side, ``worker.py`` what each worker runs, ``options.py`` Ray's config
classes from the Trainer's shortcuts, ``channel.py`` the driver's channel for progress and results.
"""

"""The Ray backend: runs a Trainer's stages on Ray Train workers.

``launcher.py`` is the driver side (``RayLauncher``), ``worker.py`` what each worker runs; ``options.py`` the
Trainer's Ray options, ``config.py`` Ray's config classes built from them, ``placement.py`` the checks that
they can ever be placed, ``watchdog.py`` what a run waiting for its workers waits for; ``channel.py`` the
driver's channel for progress and results (``history.py`` its logger); ``user_code.py`` which code travels to
Ray's processes by value.
"""

"""Lightning's tuner: the learning-rate range test and the batch-size search (``lightray.tuner.Tuner``).

Not to be confused with ``lightray.tune``, which runs hyperparameter searches on Ray Tune.
"""

from lightray.tuner.tuning import Tuner

__all__ = ["Tuner"]

"""Hyperparameter search with Ray Tune: ``TuneReportCallback`` in the training function, ``tuner`` on the driver.

Ray Tune's own ``Tuner``, ``TuneConfig``, ``RunConfig``, schedulers and search spaces are used as they are.
Ray is imported only when these are used.
"""

from lightray.ray_backend.placement import check_trial_fits
from lightray.tune.callback import TuneReportCallback
from lightray.tune.tuner import (
    TrialResources,
    bound_concurrency,
    checkpoint_path,
    load_best,
    trainable,
    trial_resources,
    tuner,
)

__all__ = [
    "TrialResources",
    "TuneReportCallback",
    "bound_concurrency",
    "check_trial_fits",
    "checkpoint_path",
    "load_best",
    "trainable",
    "trial_resources",
    "tuner",
]

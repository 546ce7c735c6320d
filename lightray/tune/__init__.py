"""Hyperparameter search with Ray Tune: ``TuneReportCallback`` in the training function of any Tune trial.

Ray Tune's own ``Tuner``, ``TuneConfig``, ``RunConfig``, schedulers, search algorithms and search spaces are used
as Ray documents them (``tune.Tuner(tune.with_resources(train_fn, {"cpu": 1}), ...)``); ``tuner``/``trainable``
are shortcuts that also size each trial from its Ray Train workers. Ray is imported only when these are used.
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

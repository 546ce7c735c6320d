"""Searches over a lightray training function with Ray Tune's own Tuner, schedulers and search spaces.

``trainable`` turns ``train_fn(config)`` (which builds the module, data and Trainer and calls ``fit``)
into a Tune trainable with the trial's resources; ``tuner`` builds Ray's ``Tuner`` around it with
``max_concurrent_trials`` bounded by what fits the cluster. Both run on the driver; ``train_fn`` runs
in each trial.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lightray.errors import MisconfigurationError
from lightray.ray_backend.placement import check_trial_fits, filled_worker_resources
from lightray.ray_backend.user_code import defining_module, is_user_module, register_by_value
from lightray.tune import trial as this_trial
from lightray.tune.trial import TrialResources

if TYPE_CHECKING:
    from ray.tune import Result, ResultGrid, RunConfig, TuneConfig, Tuner

    from lightray.core.module import LightningModule

DRIVER_CPUS = 0.1  # the CPU share of a trial that only drives a Ray Train run


def trial_resources(
    num_workers: int = 0,
    resources_per_worker: dict[str, float] | None = None,
    use_gpu: bool = False,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
) -> TrialResources:
    """A trial's resources: ``cpus_per_trial``/``gpus_per_trial`` for in-process trials (``num_workers=0``),
    else a small driver share plus ``num_workers`` x ``resources_per_worker``. Runs anywhere."""
    if not isinstance(num_workers, int) or num_workers < 0:
        raise MisconfigurationError(f"num_workers={num_workers!r}: must be 0 (train in the trial) or the number of "
                                    "Ray Train workers per trial.")  # fmt: skip
    if num_workers == 0:
        trial = {"CPU": float(cpus_per_trial)}
        if gpus_per_trial:
            trial["GPU"] = float(gpus_per_trial)
        return TrialResources(trial)
    return TrialResources({"CPU": DRIVER_CPUS}, num_workers, filled_worker_resources(resources_per_worker, use_gpu))


def trainable(
    train_fn: Callable[[dict[str, Any]], Any],
    *,
    num_workers: int = 0,
    resources_per_worker: dict[str, float] | None = None,
    use_gpu: bool = False,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
) -> Any:
    """``train_fn(config)`` as a Ray Tune trainable holding the trial's resources; built on the driver.

    Each trial calls ``train_fn(config)`` in the trial process. With ``num_workers >= 1`` its Trainer must
    ask for the same workers (``Trainer(num_workers=..., resources_per_worker=...)``): each trial then drives
    its own Ray Train run, kept in the trial's folder. Pass the result to ``ray.tune.Tuner`` or to
    ``ray.tune.Tuner.restore(path, trainable=...)``.
    """
    import ray.tune

    resources = trial_resources(num_workers, resources_per_worker, use_gpu, cpus_per_trial, gpus_per_trial)
    _pickle_by_value(train_fn)

    @functools.wraps(train_fn)
    def run_trial(config: dict[str, Any]) -> Any:
        this_trial.enter(this_trial.Trial(this_trial.restore_path(), resources))
        return train_fn(config)

    return ray.tune.with_resources(run_trial, {k.lower(): v for k, v in resources.trial.items()})


def tuner(
    train_fn: Callable[[dict[str, Any]], Any],
    *,
    param_space: dict[str, Any] | None = None,
    tune_config: TuneConfig | None = None,
    run_config: RunConfig | None = None,
    num_workers: int = 0,
    resources_per_worker: dict[str, float] | None = None,
    use_gpu: bool = False,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
) -> Tuner:
    """Ray's ``Tuner`` over ``train_fn``: trial resources from the workers, concurrency bounded by the cluster.

    Runs on the driver (starts Ray if needed). ``tune_config`` and ``run_config`` are Ray Tune's own; the
    returned ``Tuner`` is Ray's, so ``.fit()`` returns Ray's ``ResultGrid``::

        tuner = lightray.tune.tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                                    tune_config=tune.TuneConfig(metric="val_loss", mode="min",
                                                                scheduler=ASHAScheduler(), num_samples=8))
        results = tuner.fit()

    Raises ``MisconfigurationError`` at once when one trial can never fit the cluster.
    """
    import ray
    import ray.tune

    if not ray.is_initialized():
        ray.init()
    fn = trainable(train_fn, num_workers=num_workers, resources_per_worker=resources_per_worker, use_gpu=use_gpu,
                   cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)  # fmt: skip
    resources = trial_resources(num_workers, resources_per_worker, use_gpu, cpus_per_trial, gpus_per_trial)
    tune_config = bound_concurrency(tune_config or ray.tune.TuneConfig(), resources)
    if num_workers and tune_config.reuse_actors:
        # a reused trial process must end its training thread first, and one that drives Ray Train cannot
        warnings.warn("reuse_actors=True is ignored for trials with Ray Train workers: each trial gets a new process.",
                      stacklevel=2)  # fmt: skip
        tune_config = dataclasses.replace(tune_config, reuse_actors=False)
    return ray.tune.Tuner(fn, param_space=param_space or {}, tune_config=tune_config, run_config=run_config)


def bound_concurrency(tune_config: TuneConfig, resources: TrialResources) -> TuneConfig:
    """A copy of ``tune_config`` whose ``max_concurrent_trials`` is at most the trials the cluster holds at once.

    Runs on the driver, with Ray initialized. Raises when not even one trial fits.
    """
    import ray

    check_trial_fits(resources)
    cluster = ray.cluster_resources()
    fits = min(
        math.floor(cluster.get(key, 0.0) / amount + 1e-9) for key, amount in resources.total().items() if amount > 0
    )
    wanted = tune_config.max_concurrent_trials
    return dataclasses.replace(tune_config, max_concurrent_trials=fits if not wanted else min(wanted, fits))


# ====================================================================== results
def checkpoint_path(result: Result) -> str:
    """The file of a Tune ``Result``'s latest checkpoint: the one reported with ``result.metrics``.

    Runs on the driver; a checkpoint in remote storage is downloaded first. Load the model with
    ``LitModel.load_from_checkpoint(lightray.tune.checkpoint_path(results.get_best_result()))``.
    """
    if result.checkpoint is None:
        raise MisconfigurationError(
            f"The trial at {result.path} reported no checkpoint: keep TuneReportCallback(save_checkpoints=True) "
            "in the training function."
        )
    return this_trial.local_file(result.checkpoint)


def load_best(
    results: ResultGrid, cls: type[LightningModule], metric: str | None = None, mode: str | None = None, **kwargs: Any
) -> LightningModule:
    """The best trial's model, as ``cls.load_from_checkpoint`` builds it; runs on the driver.

    The best trial is Ray's ``results.get_best_result(metric, mode)`` (by default the search's metric and
    mode, compared on each trial's last report); its checkpoint is the one saved with that report.
    """
    return cls.load_from_checkpoint(checkpoint_path(results.get_best_result(metric=metric, mode=mode)), **kwargs)


# ====================================================================== helpers
def _pickle_by_value(fn: Callable[..., Any]) -> None:
    """Ship the user's own code with the trainable: the module of ``fn`` and the user modules it takes names
    from (``from my_models import LitModel``), so trials need not import them from disk."""
    home = defining_module(fn)
    if home is not None and home.__name__ == "__main__":
        names = getattr(fn, "__globals__", {})  # cloudpickle sends __main__'s own code by value
    elif is_user_module(home):
        names = vars(home)
    else:
        return  # a library's function (lightray's own trial of `lightray tune`): no user code around it to ship
    register_by_value([fn, *(value for value in names.values() if callable(value))])

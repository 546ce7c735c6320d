"""The Ray Tune trial this process runs, if any: the checkpoint it starts from, and the workers Tune counted for it.

Any function trainable that Ray Tune runs is a trial: a plain ``ray.tune.Tuner(train_fn)`` (with or without
``tune.with_resources`` / ``tune.with_parameters``) is found through Tune's public context. A trial made by
``lightray.tune.trainable`` also knows its workers: the launcher of the Trainer's ``fit`` then checks that it
asks for the workers the trial was given (``match_workers``), so a trial never starts workers that Tune did not
count and that could wait forever for resources.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

from lightray.checkpoint import CHECKPOINT_FILE
from lightray.errors import MisconfigurationError
from lightray.ray_backend.placement import filled_worker_resources

if TYPE_CHECKING:
    from lightray.ray_backend.options import RayOptions


@dataclasses.dataclass(frozen=True)
class TrialResources:
    """What one trial holds: its own bundle, plus the Ray Train workers it starts (none for in-process trials).

    Ray Train reserves its workers in a placement group of its own, so the trial's Tune bundle holds only
    the driver share; the workers still count when deciding how many trials fit at once.
    """

    trial: dict[str, float]
    num_workers: int = 0
    per_worker: dict[str, float] = dataclasses.field(default_factory=dict)

    def total(self) -> dict[str, float]:
        keys = set(self.trial) | set(self.per_worker)
        return {k: self.trial.get(k, 0.0) + self.num_workers * self.per_worker.get(k, 0.0) for k in keys}


@dataclasses.dataclass(frozen=True)
class Trial:
    checkpoint_path: str | None  # the Tune checkpoint to resume from (PBT exploit, restore), else None
    resources: TrialResources | None  # what lightray.tune.trainable counted for it; None in a plain Tune trial


_current: Trial | None = None


def enter(trial: Trial) -> None:
    """Mark this process as a lightray Tune trial (trial process)."""
    global _current
    _current = trial


def current() -> Trial | None:
    """The trial this process runs (one of ``lightray.tune.trainable``, else any Ray Tune function trainable's),
    or None outside Tune, Ray Train workers included."""
    if _current is not None:
        return _current
    if "ray" not in sys.modules:  # a process that never imported Ray runs no Tune trial
        return None
    import ray.tune

    with warnings.catch_warnings():  # outside a trial Ray warns that it returns None: that is the answer wanted
        warnings.simplefilter("ignore")
        trial_id = ray.tune.get_context().get_trial_id()
    return None if trial_id is None else Trial(restore_path(), None)


def restore_path() -> str | None:
    """The checkpoint file this trial starts from (PBT's exploited one, its own on restore or retry), if any;
    in the trial process."""
    import ray.tune

    checkpoint = ray.tune.get_checkpoint()
    return None if checkpoint is None else local_file(checkpoint)


def local_file(checkpoint: Any) -> str:
    """``checkpoint.ckpt`` of a Ray checkpoint folder, downloaded first when it is in remote storage."""
    import pyarrow.fs

    local = isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem)
    return os.path.join(checkpoint.path if local else checkpoint.to_directory(), CHECKPOINT_FILE)


def match_workers(options: RayOptions) -> RayOptions:
    """Before a fit in a Tune trial: the Trainer's options with the trial's per-worker resources when they name
    none; raises when they ask for other workers than the trial was given (trial process)."""
    if _current is None or _current.resources is None:
        return options  # a plain Tune trial: its Ray Train run asks for its own resources, as Ray documents
    trial = _current.resources
    scaling = options.scaling_config
    if scaling is not None:
        workers, resources, use_gpu = scaling.num_workers, scaling.resources_per_worker, scaling.use_gpu
    else:
        workers, resources, use_gpu = options.num_workers or 0, options.resources_per_worker, options.use_gpu
    same_kind = use_gpu == (trial.per_worker.get("GPU", 0.0) > 0)
    if scaling is None and resources is None and trial.num_workers and workers == trial.num_workers and same_kind:
        return options.replace(resources_per_worker=dict(trial.per_worker))  # what Tune counted, not a share
    asked = filled_worker_resources(resources, use_gpu) if workers else {}
    if workers == trial.num_workers and (not workers or _same(asked, trial.per_worker)):
        return options
    given = (
        f"{trial.num_workers} Ray Train workers x {trial.per_worker}"
        if trial.num_workers
        else "no Ray Train workers (it trains in its own process)"
    )
    if workers:
        shown = resources is not None or use_gpu  # an unset CPU share is chosen later: not shown
        wants = f"{workers} worker{'s' if workers != 1 else ''}" + (f" x {asked}" if shown else "")
    else:
        wants = "no workers (num_workers=0: it trains in the trial process)"
    raise MisconfigurationError(
        f"This Tune trial was given {given} (lightray.tune.tuner/trainable(num_workers=..., resources_per_worker="
        f"...)), but its Trainer asks for {wants}. Tune counts the trial's workers when it places trials, so the "
        "two must agree: pass the same num_workers and resources_per_worker to both (or leave the Trainer's "
        "resources_per_worker unset to use the trial's)."
    )


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    keys = {k for k, v in a.items() if v} | {k for k, v in b.items() if v}
    return all(math.isclose(a.get(k, 0.0), b.get(k, 0.0), abs_tol=1e-9) for k in keys)

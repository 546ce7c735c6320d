"""A Ray Tune trial's resources, and the trial this process runs, if any: its checkpoint and the workers Tune counted.

``lightray.tune.trainable`` enters the trial before the user's function runs; the launcher of the Trainer's
``fit`` then checks that it asks for the workers the trial was given (``match_workers``), so a trial never starts
workers that Tune did not count and that could wait forever for resources.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

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
    resources: TrialResources  # what Tune counted for it; num_workers=0: it trains in its own process


_current: Trial | None = None


def enter(trial: Trial) -> None:
    """Mark this process as a lightray Tune trial (trial process)."""
    global _current
    _current = trial


def current() -> Trial | None:
    """The trial this process runs, or None outside lightray Tune trials."""
    return _current


def match_workers(options: RayOptions) -> RayOptions:
    """Before a fit in a Tune trial: the Trainer's options with the trial's per-worker resources when they name
    none; raises when they ask for other workers than the trial was given (trial process)."""
    if _current is None:
        return options
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

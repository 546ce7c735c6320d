"""The Trainer's Ray options: its shortcuts for Ray Train's configs, or Ray's own config objects."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """``trainer.ray_options``: where a Trainer's stages run. ``num_workers=0`` and no ``scaling_config``:
    in this process; otherwise on Ray Train workers. A change (a Tune trial's resources) makes a new value."""

    num_workers: int | tuple[int, int] = 0
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    placement_strategy: str = "PACK"
    storage_path: str | None = None
    name: str | None = None
    max_failures: int = 0
    scaling_config: Any = None  # ray.train.ScalingConfig
    run_config: Any = None  # ray.train.RunConfig

    @property
    def on_ray(self) -> bool:
        return bool(self.num_workers) or self.scaling_config is not None

    def replace(self, **changes: Any) -> RayOptions:
        return dataclasses.replace(self, **changes)

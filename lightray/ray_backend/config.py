"""Ray's own config classes from the Trainer's keyword shortcuts (whether they fit: ``placement``)."""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

from lightray import storage
from lightray.errors import MisconfigurationError
from lightray.ray_backend.placement import RESERVED_CPUS

if TYPE_CHECKING:
    from ray.train import RunConfig, ScalingConfig

    from lightray.callbacks.model_checkpoint import ModelCheckpoint
    from lightray.ray_backend.options import RayOptions


def ray_configs(
    options: RayOptions, default_root_dir: str, checkpoint_callback: ModelCheckpoint | None
) -> tuple[ScalingConfig, RunConfig]:
    """The ScalingConfig and RunConfig of a Trainer's ``options``: the user's own, or built from the shortcuts
    (runs on the driver, with Ray initialized)."""
    import ray
    import ray.train

    scaling = options.scaling_config
    if scaling is None:
        resources = options.resources_per_worker
        if resources is None and not options.use_gpu:
            most = options.num_workers if isinstance(options.num_workers, int) else options.num_workers[1]
            resources = {"CPU": _default_cpu_share(most, ray.cluster_resources().get("CPU", 1.0))}
        scaling = ray.train.ScalingConfig(
            num_workers=options.num_workers,  # type: ignore[arg-type]  # (min, max) is Train v2's; mypy sees v1
            use_gpu=options.use_gpu,
            resources_per_worker=resources,
            placement_strategy=options.placement_strategy,
        )
    run = options.run_config
    if run is None:
        storage_path = options.storage_path or os.path.join(default_root_dir, "ray_results")
        if not storage.is_remote(storage_path):  # relative to the driver's folder (workers run in Ray's session folder)
            storage_path = os.path.abspath(storage_path)
        run = ray.train.RunConfig(  # type: ignore[call-arg]  # (mypy sees Ray Train v1 stubs)
            name=options.name or time.strftime("lightray-%Y%m%d-%H%M%S"),
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=_checkpoint_config(checkpoint_callback),
            # Ray Train's per-report INFO lines would drown the progress bar; warnings still show
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        )
    else:
        if run.name is None or run.storage_path is None:
            raise MisconfigurationError(
                "`run_config` needs `name` and `storage_path` set, so lightray knows where the checkpoints are: "
                "ray.train.RunConfig(name='my-run', storage_path='/shared/or/s3://bucket/path', ...)."
            )
    return scaling, run


def _default_cpu_share(num_workers: int, cluster_cpus: float) -> float:
    """Up to one CPU per worker, leaving ``RESERVED_CPUS`` for Ray Data and the driver's small actors."""
    share = math.floor(10 * min(1.0, (cluster_cpus - RESERVED_CPUS) / num_workers)) / 10
    if share < 0.1:
        raise MisconfigurationError(
            f"{num_workers} workers do not fit this Ray cluster's {cluster_cpus:g} CPUs (with {RESERVED_CPUS} kept "
            "for Ray Data): use fewer workers, add nodes, or pass resources_per_worker={'CPU': ...} explicitly."
        )
    return share


def _checkpoint_config(callback: ModelCheckpoint | None) -> Any:
    """Ray's retention from the ModelCheckpoint: its top-k by its monitor (Ray always keeps the latest too)."""
    import ray.train

    if callback is None or callback.save_top_k in (-1, 0):
        return ray.train.CheckpointConfig()
    if callback.monitor is None:
        return ray.train.CheckpointConfig(num_to_keep=max(1, callback.save_top_k))
    return ray.train.CheckpointConfig(
        num_to_keep=callback.save_top_k,
        checkpoint_score_attribute=callback.monitor,
        checkpoint_score_order=callback.mode,
    )

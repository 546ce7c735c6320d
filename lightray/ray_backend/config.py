"""Ray's own config classes from the Trainer's keyword shortcuts, and a check that they can ever fit."""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from ray.train import RunConfig, ScalingConfig

    from lightray.trainer import Trainer

# CPUs left free for Ray Data and other tasks when worker shares are chosen automatically: one Ray Data
# task asks for a whole CPU by default, and cannot start on less.
RESERVED_CPUS = 1.0


def ray_configs(trainer: Trainer) -> tuple[ScalingConfig, RunConfig]:
    """The ScalingConfig and RunConfig of ``trainer``: the user's own, or built from the shortcuts."""
    import ray
    import ray.train

    options = trainer._ray_options
    scaling = options["scaling_config"]
    if scaling is None:
        resources = options["resources_per_worker"]
        if resources is None and not options["use_gpu"]:
            most = options["num_workers"] if isinstance(options["num_workers"], int) else options["num_workers"][1]
            resources = {"CPU": _default_cpu_share(most, ray.cluster_resources().get("CPU", 1.0))}
        scaling = ray.train.ScalingConfig(
            num_workers=options["num_workers"],
            use_gpu=options["use_gpu"],
            resources_per_worker=resources,
            placement_strategy=options["placement_strategy"],
        )
    run = options["run_config"]
    if run is None:
        storage_path = options["storage_path"] or os.path.join(os.path.abspath(trainer.default_root_dir), "ray_results")
        run = ray.train.RunConfig(  # type: ignore[call-arg]  # (mypy sees Ray Train v1 stubs)
            name=options["name"] or time.strftime("lightray-%Y%m%d-%H%M%S"),
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=options["max_failures"]),
            checkpoint_config=_checkpoint_config(trainer),
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


def _checkpoint_config(trainer: Trainer) -> Any:
    """Ray's retention from the ModelCheckpoint: its top-k by its monitor (Ray always keeps the latest too)."""
    import ray.train

    callback = trainer.checkpoint_callback
    if callback is None or callback.save_top_k in (-1, 0):
        return ray.train.CheckpointConfig()
    if callback.monitor is None:
        return ray.train.CheckpointConfig(num_to_keep=max(1, callback.save_top_k))
    return ray.train.CheckpointConfig(
        num_to_keep=callback.save_top_k,
        checkpoint_score_attribute=callback.monitor,
        checkpoint_score_order=callback.mode,
    )


def worker_resources(scaling: Any) -> dict[str, float]:
    """What one worker of ``scaling`` holds, with Ray Train's defaults filled in."""
    return filled_worker_resources(scaling.resources_per_worker, scaling.use_gpu)


def filled_worker_resources(resources: dict[str, Any] | None, use_gpu: bool) -> dict[str, float]:
    """One worker's ``resources_per_worker`` with Ray Train's defaults: 1 CPU, or 1 GPU and no CPU with use_gpu."""
    per_worker = {key: float(value) for key, value in (resources or {}).items()}
    per_worker.setdefault("CPU", 0.0 if use_gpu else 1.0)
    if use_gpu:
        per_worker.setdefault("GPU", 1.0)
    return per_worker


def check_fits(scaling: Any) -> None:
    """Raise at once when the worker group can never be placed, instead of waiting forever."""
    import ray

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    per_worker = worker_resources(scaling)
    workers = scaling.num_workers if isinstance(scaling.num_workers, int) else scaling.num_workers[0]
    totals: dict[str, float] = {}
    for node in nodes:
        for key, value in node.get("Resources", {}).items():
            totals[key] = totals.get(key, 0.0) + value
    problems = []
    for key, amount in per_worker.items():
        if amount and totals.get(key, 0.0) + 1e-9 < amount * workers:
            problems.append(
                f"{workers} workers x {amount:g} {key} = {amount * workers:g}, cluster has {totals.get(key, 0):g}"
            )
    if scaling.placement_strategy in ("STRICT_SPREAD",) and len(nodes) < workers:
        problems.append(f"placement_strategy='STRICT_SPREAD' needs {workers} nodes, cluster has {len(nodes)}")
    if scaling.placement_strategy in ("STRICT_SPREAD", "SPREAD", "PACK", "STRICT_PACK"):
        fits_one = [
            n for n in nodes if all(n.get("Resources", {}).get(k, 0) + 1e-9 >= v for k, v in per_worker.items() if v)
        ]
        if not fits_one:
            problems.append(f"no node has the resources of one worker {per_worker}")
    if problems:
        raise MisconfigurationError(
            "The requested Ray workers can never be placed on this cluster:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nLower num_workers or resources_per_worker, or add nodes."
        )


def check_room_for_ray_data(cluster_cpus: float, workers: int, cpus_per_worker: float) -> None:
    """Raise when the training workers leave no CPU for Ray Data's tasks (it would wait forever)."""
    left = cluster_cpus - workers * cpus_per_worker
    if left + 1e-9 < RESERVED_CPUS:
        raise MisconfigurationError(
            f"Ray Data has no CPU to run on: {workers} workers x {cpus_per_worker:g} CPU leave {max(left, 0):g} of "
            f"the cluster's {cluster_cpus:g} CPUs, and each Ray Data task needs {RESERVED_CPUS:g}; training would wait "
            "forever for its first batch. Give the workers fractional CPUs (resources_per_worker={'CPU': 0.5}, or "
            "leave it unset for automatic shares), use fewer workers, or add nodes."
        )

"""What fits on the Ray cluster: a worker's resources, and checks that fail at once when something never fits.

Ray waits forever for resources that no node can give; these checks run on the driver (with Ray initialized)
before a Ray Train run or a Tune search starts, and name the numbers that do not add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.tune.trial import TrialResources

# CPUs left free for Ray Data and other tasks when worker shares are chosen automatically: one Ray Data
# task asks for a whole CPU by default, and cannot start on less.
RESERVED_CPUS = 1.0
_TOLERANCE = 1e-9  # fractional resources add up with rounding errors


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


@dataclass(frozen=True)
class Cluster:
    """The resources of the cluster's alive nodes, one dict per node. Read it with :meth:`now` (driver)."""

    nodes: tuple[dict[str, float], ...]

    @classmethod
    def now(cls) -> Cluster:
        import ray

        return cls(tuple(node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")))

    def totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for node in self.nodes:
            for key, value in node.items():
                totals[key] = totals.get(key, 0.0) + value
        return totals

    def shortfalls(self, demand: dict[str, float]) -> list[tuple[str, float, float]]:
        """``(resource, amount asked, amount the whole cluster has)`` for each resource of ``demand`` it lacks."""
        totals = self.totals()
        return [
            (key, amount, totals.get(key, 0.0))
            for key, amount in demand.items()
            if amount > 0 and totals.get(key, 0.0) + _TOLERANCE < amount
        ]

    def has_node_for(self, bundle: dict[str, float]) -> bool:
        """Whether one node alone holds all of ``bundle`` (a placement-group bundle never spans nodes)."""
        return any(all(node.get(k, 0.0) + _TOLERANCE >= v for k, v in bundle.items() if v) for node in self.nodes)


def _raise_if(problems: list[str], heading: str, advice: str) -> None:
    if problems:
        raise MisconfigurationError(f"{heading}:\n" + "\n".join(f"  - {p}" for p in problems) + f"\n{advice}")


def check_fits(scaling: Any) -> None:
    """Raise at once when the worker group of ``scaling`` can never be placed, instead of waiting forever."""
    cluster = Cluster.now()
    per_worker = worker_resources(scaling)
    workers = scaling.num_workers if isinstance(scaling.num_workers, int) else scaling.num_workers[0]
    problems = [
        f"{workers} workers x {per_worker[key]:g} {key} = {amount:g}, cluster has {has:g}"
        for key, amount, has in cluster.shortfalls({key: value * workers for key, value in per_worker.items()})
    ]
    if scaling.placement_strategy in ("STRICT_SPREAD",) and len(cluster.nodes) < workers:
        problems.append(f"placement_strategy='STRICT_SPREAD' needs {workers} nodes, cluster has {len(cluster.nodes)}")
    placed_by_ray = scaling.placement_strategy in ("STRICT_SPREAD", "SPREAD", "PACK", "STRICT_PACK")
    if placed_by_ray and not cluster.has_node_for(per_worker):
        problems.append(f"no node has the resources of one worker {per_worker}")
    _raise_if(
        problems,
        "The requested Ray workers can never be placed on this cluster",
        "Lower num_workers or resources_per_worker, or add nodes.",
    )


def check_trial_fits(resources: TrialResources) -> None:
    """Raise when one Tune trial (its bundle and its workers) can never be placed on the cluster (driver)."""
    cluster = Cluster.now()
    problems = [
        f"one trial needs {amount:g} {key}, the cluster has {has:g}"
        for key, amount, has in cluster.shortfalls(resources.total())
    ]
    if not cluster.has_node_for(resources.trial):
        problems.append(f"no node has the trial's own bundle {resources.trial}")
    if resources.num_workers and not cluster.has_node_for(resources.per_worker):
        problems.append(f"no node has the resources of one worker {resources.per_worker}")
    shape = (
        f"{resources.trial} for the trial + {resources.num_workers} workers x {resources.per_worker}"
        if resources.num_workers
        else f"{resources.trial} per trial"
    )
    _raise_if(
        problems,
        f"A trial can never be placed on this Ray cluster ({shape})",
        "Lower num_workers, resources_per_worker or cpus_per_trial (fractional CPUs such as 0.4 are fine), "
        "or add nodes.",
    )


def check_room_for_ray_data(cluster_cpus: float, workers: int, cpus_per_worker: float) -> None:
    """Raise when the training workers leave no CPU for Ray Data's tasks (it would wait forever)."""
    left = cluster_cpus - workers * cpus_per_worker
    if left + _TOLERANCE < RESERVED_CPUS:
        raise MisconfigurationError(
            f"Ray Data has no CPU to run on: {workers} workers x {cpus_per_worker:g} CPU leave {max(left, 0):g} of "
            f"the cluster's {cluster_cpus:g} CPUs, and each Ray Data task needs {RESERVED_CPUS:g}; training would wait "
            "forever for its first batch. Give the workers fractional CPUs (resources_per_worker={'CPU': 0.5}, or "
            "leave it unset for automatic shares), use fewer workers, or add nodes."
        )

"""On the driver: while the Ray Train workers have not started, say every so often what Ray is waiting for.

A run that cannot get its resources, or whose workers are starved of CPU, would otherwise print nothing for
minutes. The line names what is pending (placement groups and the resources free now) and, when the machine is
overloaded, that Ray starts its workers at niceness 15 so other busy processes can starve them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

INTERVAL_S = float(os.environ.get("LIGHTRAY_WATCHDOG_S", "30"))


class Watchdog:
    """Speaks every ``interval`` seconds until ``started`` is set (by the first word from rank 0)."""

    def __init__(self, started: threading.Event, interval: float = INTERVAL_S, stream: TextIO | None = None) -> None:
        self.started, self.interval, self.stream = started, interval, stream or sys.stderr
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lightray-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._begin = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            if self.started.is_set():
                return
            waited = time.monotonic() - self._begin
            print(f"lightray: the Ray Train workers have not started after {waited:.0f} s; {what_ray_waits_for()}",
                  file=self.stream, flush=True)  # fmt: skip


def what_ray_waits_for() -> str:
    """What is pending on the cluster, and whether this machine is overloaded (driver, Ray initialized)."""
    import ray
    from ray.util import placement_group_table

    parts = []
    try:
        pending = [pg for pg in placement_group_table().values() if pg.get("state") == "PENDING"]
    except Exception:  # the GCS is busy or gone: say what can be said
        pending = []
    if pending:
        bundles = list(pending[0].get("bundles", {}).values())
        free = {k: round(v, 2) for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
        parts.append(f"{len(pending)} placement group(s) wait for resources (bundles {bundles}; free now: {free})")
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus:
        parts.append(
            f"this machine's load average is {load:.1f} on {cpus} CPUs: Ray starts its workers at niceness 15 "
            "(RAY_worker_niceness), so other busy processes starve them; stop those, or start Ray with "
            "RAY_worker_niceness=0"
        )
    return "; ".join(parts) or "nothing is pending: Ray Train is starting its controller and workers"

"""The driver channel: a small actor through which rank 0 sends progress, metric history and results.

Ray Train's ``report`` carries checkpoints and their metrics; this carries what the driver shows
live (one progress bar for the whole job) and what ``fit`` hands back (weights, metrics, paths).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ray

from lightray.callbacks.progress import Renderer


@ray.remote(num_cpus=0)
class DriverChannel:
    """Lives next to the driver; rank 0 writes, the driver reads."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.history: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None

    def progress(self, events: list[tuple]) -> None:
        self.events.extend(events)

    def log(self, rows: list[dict[str, Any]]) -> None:
        self.history.extend(rows)

    def restart_from(self, step: int) -> None:
        """A restarted worker group resumes at ``step``: forget history the lost attempt logged after it."""
        self.history = [row for row in self.history if row.get("step", 0) <= step]

    def finish(self, payload: dict[str, Any]) -> None:
        self.final = payload

    def drain(self) -> list[tuple]:
        events, self.events = self.events, []
        return events

    def result(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        return self.final, self.history


class ChannelRenderer:
    """A progress renderer on rank 0 that forwards to the driver, batching calls to a few per second."""

    def __init__(self, channel: Any, interval: float = 0.2) -> None:
        self.channel = channel
        self.interval = interval
        self._buffer: list[tuple] = []
        self._sent = 0.0

    def _add(self, event: tuple, flush: bool) -> None:
        self._buffer.append(event)
        now = time.monotonic()
        if flush or now - self._sent >= self.interval:
            self.channel.progress.remote(self._buffer)
            self._buffer, self._sent = [], now

    def start(self, stage: str, description: str, total: float) -> None:
        self._add(("start", stage, description, total), flush=True)

    def update(self, stage: str, n: int, metrics: dict[str, float]) -> None:
        if self._buffer and self._buffer[-1][:2] == ("update", stage):
            self._buffer.pop()  # only the newest position matters
        self._add(("update", stage, n, metrics), flush=False)

    def close(self, stage: str) -> None:
        self._add(("close", stage), flush=True)

    def __getstate__(self) -> dict[str, Any]:
        return {"channel": self.channel, "interval": self.interval, "_buffer": [], "_sent": 0.0}


class ProgressRelay:
    """On the driver: a thread that replays rank 0's progress events on a local renderer."""

    def __init__(self, channel: Any, renderer: Renderer, interval: float = 0.2) -> None:
        self.channel, self.renderer, self.interval = channel, renderer, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lightray-progress", daemon=True)

    def __enter__(self) -> ProgressRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._replay()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._replay()

    def _replay(self) -> None:
        try:
            events = ray.get(self.channel.drain.remote(), timeout=10)
        except Exception:  # the channel is gone at shutdown; progress is best effort
            return
        for event in events:
            kind, stage, *rest = event
            getattr(self.renderer, kind)(stage, *rest)

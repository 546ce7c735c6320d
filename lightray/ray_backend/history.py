"""HistoryLogger: on rank 0, forwards every logged row to the driver, which keeps the metric history."""

from __future__ import annotations

from typing import Any

from lightray.loggers.logger import Logger


class HistoryLogger(Logger):
    """Sends ``log_metrics`` rows to the driver channel in batches (flushed on ``save``)."""

    def __init__(self, channel: Any, batch: int = 20) -> None:
        self.channel = channel
        self.batch = batch
        self._rows: list[dict[str, Any]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._rows.append({**metrics, "step": step})
        if len(self._rows) >= self.batch:
            self.save()

    def save(self) -> None:
        if self._rows:
            self.channel.log.remote(self._rows)
            self._rows = []

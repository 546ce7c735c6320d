"""CSVLogger: ``metrics.csv`` and ``hparams.yaml`` under ``<save_dir>/<name>/version_N``, as Lightning lays them out."""

from __future__ import annotations

import csv
import os
from typing import Any

from lightray.loggers.logger import FolderLogger


class CSVLogger(FolderLogger):
    """Writes metrics to a CSV file; the default logger. Rows are buffered and written on ``save``."""

    def __init__(
        self, save_dir: str | os.PathLike, name: str | None = "lightning_logs", version: int | str | None = None
    ) -> None:
        super().__init__(save_dir, name, version)
        self._rows: list[dict[str, Any]] = []
        self._columns: list[str] = []
        self._hparams: dict[str, Any] = {}

    @property
    def experiment(self) -> CSVLogger:
        """The logger itself: it writes ``metrics.csv`` and ``hparams.yaml`` (``log_metrics``, ``save``)."""
        return self

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {**metrics, "step": step}
        for key in row:
            if key not in self._columns:
                self._columns.append(key)
        self._rows.append(row)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self._hparams.update(params)
        self.save()

    def save(self) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        if self._hparams:
            write_hparams_yaml(self.log_dir, self._hparams)
        if self._rows:
            with open(os.path.join(self.log_dir, "metrics.csv"), "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=sorted(self._columns))  # Lightning's column order
                writer.writeheader()
                writer.writerows(self._rows)


def _plain(value: Any) -> Any:
    """Values yaml.safe_dump can write (anything else as its repr)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def write_hparams_yaml(folder: str, hparams: dict[str, Any]) -> None:
    """``<folder>/hparams.yaml``, as Lightning's loggers write it."""
    import yaml

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "hparams.yaml"), "w") as f:
        yaml.safe_dump(_plain(hparams), f)

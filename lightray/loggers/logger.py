"""Logger: the interface the loop writes metrics and hyperparameters to."""

from __future__ import annotations

import os
from typing import Any


class Logger:
    """Base class of lightray's loggers (Lightning's Logger interface).

    Loggers live in the training process; under Ray only global rank 0 writes.
    """

    @property
    def name(self) -> str | None:
        return None

    @property
    def version(self) -> int | str | None:
        return None

    @property
    def save_dir(self) -> str | None:
        return None

    @property
    def log_dir(self) -> str | None:
        return None

    @property
    def root_dir(self) -> str | None:
        if self.save_dir is None or self.name is None:
            return self.save_dir
        return os.path.join(self.save_dir, self.name)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record numbers at ``step`` (the number of optimizer-stepping batches so far)."""

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        """Record the module's (and datamodule's) hyperparameters."""

    def save(self) -> None:
        """Flush what was recorded."""

    def finalize(self, status: str) -> None:
        """Called once at the end: ``"success"`` or ``"failed"``."""
        self.save()


class FolderLogger(Logger):
    """A logger that writes under ``<save_dir>/<name>/version_N`` (the next free N unless ``version`` is given)."""

    def __init__(self, save_dir: str | os.PathLike, name: str | None, version: int | str | None) -> None:
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        if self._version is None:
            self._version = next_version(os.path.join(self._save_dir, self._name))
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def log_dir(self) -> str:
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        return os.path.join(self._save_dir, self._name, version)


def next_version(root: str) -> int:
    """The next free ``version_N`` under ``root`` (0 when there is none)."""
    if not os.path.isdir(root):
        return 0
    versions = [
        int(entry[len("version_") :])
        for entry in os.listdir(root)
        if entry.startswith("version_") and entry[len("version_") :].isdigit()
    ]
    return max(versions) + 1 if versions else 0

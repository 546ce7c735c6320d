"""``Profiler``: the base of lightray's profilers, and ``PassThroughProfiler`` (profiles nothing).

A profiler times named actions (``with profiler.profile("run_training_batch")``, Lightning's names); the
Trainer gives it every hook it calls and the loop's own steps. At the end of each stage it reports: into
``<dirpath>/<stage>-<filename>.txt`` when a ``filename`` is given (``dirpath`` defaults to the logger's folder),
else on the ``lightray`` logger. Runs in the training process (each Ray Train worker has its own; ranks above 0
write ``<stage>-<filename>-rank<N>.txt``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("lightray")


class Profiler:
    """Subclass and implement ``start``, ``stop`` and ``summary``."""

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None) -> None:
        self.dirpath = os.fspath(dirpath) if dirpath is not None else None
        self.filename = filename
        self._stage: str | None = None
        self._rank = 0

    def start(self, action_name: str) -> None:
        raise NotImplementedError

    def stop(self, action_name: str) -> None:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError

    @contextlib.contextmanager
    def profile(self, action_name: str) -> Iterator[str]:
        """Time the block as ``action_name``."""
        self.start(action_name)
        try:
            yield action_name
        finally:
            self.stop(action_name)

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        """Called when a stage starts (training process)."""
        self._stage, self._rank = stage, local_rank or 0
        self.dirpath = self.dirpath or log_dir

    def describe(self) -> None:
        """Report what was recorded: to the file, or on the ``lightray`` logger."""
        text = self.summary()
        if not text:
            return
        if self.filename:
            suffix = f"-rank{self._rank}" if self._rank else ""
            path = os.path.join(self.dirpath or os.getcwd(), f"{self._stage}-{self.filename}{suffix}.txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a") as f:
                f.write(text + "\n")
        elif self._rank == 0:
            log.info(text)

    def teardown(self, stage: str | None) -> None:
        """Called when a stage ends, after ``describe``."""

    def state_dict(self) -> dict[str, Any]:
        return {}


class PassThroughProfiler(Profiler):
    """Profiles nothing (``Trainer(profiler=None)``)."""

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        pass

    def summary(self) -> str:
        return ""

"""``PyTorchProfiler``: torch's own profiler over the stage, each action a ``record_function`` range."""

from __future__ import annotations

import os
from typing import Any

import torch

from lightray.profilers.profiler import Profiler


class PyTorchProfiler(Profiler):
    """``Trainer(profiler="pytorch")``: operator times from ``torch.profiler``, grouped under the loop's actions.

    ``sort_by_key`` and ``row_limit`` shape the report's table; other keywords go to ``torch.profiler.profile``.
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None,
                 sort_by_key: str = "cpu_time_total", row_limit: int = 20, **profiler_kwargs: Any) -> None:  # fmt: skip
        super().__init__(dirpath, filename)
        self.sort_by_key, self.row_limit, self.profiler_kwargs = sort_by_key, row_limit, profiler_kwargs
        self._session: Any = None
        self._ranges: dict[str, Any] = {}
        self._table = ""

    def start(self, action_name: str) -> None:
        if self._session is None:
            self._session = torch.profiler.profile(**self.profiler_kwargs)
            self._session.__enter__()
        record = torch.profiler.record_function(action_name)
        record.__enter__()
        self._ranges[action_name] = record

    def stop(self, action_name: str) -> None:
        record = self._ranges.pop(action_name, None)
        if record is None:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        record.__exit__(None, None, None)

    def summary(self) -> str:
        if self._session is None:
            return self._table
        session, self._session = self._session, None
        session.__exit__(None, None, None)
        averages = session.key_averages()
        self._table = f"{(self._stage or '').upper()} Profiler Report\n" + averages.table(
            sort_by=self.sort_by_key, row_limit=self.row_limit
        )
        return self._table

    def teardown(self, stage: str | None) -> None:
        self._ranges.clear()
        self._table = ""

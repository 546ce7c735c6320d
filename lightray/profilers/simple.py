"""``SimpleProfiler``: how long each action took, as a table of mean, calls, total and share of the time profiled."""

from __future__ import annotations

import os
import time
from collections import defaultdict

from lightray.profilers.profiler import Profiler


class SimpleProfiler(Profiler):
    """Wall time per action; ``Trainer(profiler="simple")``. ``extended=True`` adds the calls column's mean.

    As Lightning's, it keeps what it recorded from stage to stage: a Trainer's ``validate`` report after ``fit``
    counts the fit's actions too, and its total time runs from the first stage on.
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None,
                 extended: bool = True) -> None:  # fmt: skip
        super().__init__(dirpath, filename)
        self.extended = extended
        self.current: dict[str, float] = {}
        self.recorded: dict[str, list[float]] = defaultdict(list)
        self._began: float | None = None  # set by the first action (a Ray worker's copy starts its own clock)

    def start(self, action_name: str) -> None:
        if self._began is None:
            self._began = time.monotonic()
        if action_name in self.current:
            raise ValueError(f"Attempted to start {action_name} which has already started.")
        self.current[action_name] = time.monotonic()

    def stop(self, action_name: str) -> None:
        began = self.current.pop(action_name, None)
        if began is None:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        self.recorded[action_name].append(time.monotonic() - began)

    def summary(self) -> str:
        if not self.recorded:
            return ""
        total = time.monotonic() - (self._began or time.monotonic())
        rows = sorted(
            ((name, sum(d) / len(d), len(d), sum(d)) for name, d in self.recorded.items()), key=lambda r: -r[3]
        )
        width = max(len("Action"), *(len(name) for name, *_ in rows))
        header = f"| {'Action':<{width}} | Mean duration (s) | Num calls | Total time (s) | Percentage % |"
        line = "-" * len(header)
        out = [f"{(self._stage or '').upper()} Profiler Report", line, header, line,
               f"| {'Total':<{width}} | {'-':>17} | {sum(r[2] for r in rows):>9} | {total:>14.5g} | {100.0:>12.1f} |",
               line]  # fmt: skip
        for name, mean, calls, spent in rows:
            share = 100.0 * spent / total if total > 0 else 0.0
            out.append(f"| {name:<{width}} | {mean:>17.5g} | {calls:>9} | {spent:>14.5g} | {share:>12.1f} |")
        return "\n".join(out)

    def teardown(self, stage: str | None) -> None:
        self.current.clear()  # actions a failed stage left open

"""``AdvancedProfiler``: Python's cProfile per action; the report lists each action's most expensive calls."""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats

from lightray.profilers.profiler import Profiler


class AdvancedProfiler(Profiler):
    """``Trainer(profiler="advanced")``: a cProfile per action, reported by cumulative time.

    ``line_count_restriction``: how many lines of each action's report (an int) or which share of them (a float).
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str | None = None,
                 line_count_restriction: float = 1.0) -> None:  # fmt: skip
        super().__init__(dirpath, filename)
        self.line_count_restriction = line_count_restriction
        self.profiled: dict[str, cProfile.Profile] = {}

    def start(self, action_name: str) -> None:
        profile = self.profiled.setdefault(action_name, cProfile.Profile())
        # a nested action (a hook inside a profiled step): Python 3.12+ refuses a second active profile, so its
        # time stays counted in the outer action's
        with contextlib.suppress(ValueError):
            profile.enable()

    def stop(self, action_name: str) -> None:
        profile = self.profiled.get(action_name)
        if profile is None:
            raise ValueError(f"Attempting to stop recording an action ({action_name}) which was never started.")
        profile.disable()

    def summary(self) -> str:
        reports = []
        for name, profile in self.profiled.items():
            stream = io.StringIO()
            try:
                stats = pstats.Stats(profile, stream=stream)
            except TypeError:  # never enabled (always nested in another action)
                continue
            stats.strip_dirs().sort_stats("cumulative").print_stats(self.line_count_restriction)
            reports.append(f"Profile stats for: {name}\n{stream.getvalue()}")
        if not reports:
            return ""
        return f"{(self._stage or '').upper()} Profiler Report\n\n" + "\n".join(reports)

    def teardown(self, stage: str | None) -> None:
        self.profiled.clear()

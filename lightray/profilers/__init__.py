"""Profilers: time the loop's hooks and steps (``Trainer(profiler="simple" | "advanced" | "pytorch" | Profiler)``).

The report comes at the end of each stage, on the ``lightray`` logger or in ``<dirpath>/<stage>-<filename>.txt``.
"""

from __future__ import annotations

from typing import Any

from lightray.errors import MisconfigurationError
from lightray.profilers.advanced import AdvancedProfiler
from lightray.profilers.profiler import PassThroughProfiler, Profiler
from lightray.profilers.pytorch import PyTorchProfiler
from lightray.profilers.simple import SimpleProfiler

BY_NAME: dict[str, type[Profiler]] = {
    "simple": SimpleProfiler,
    "advanced": AdvancedProfiler,
    "pytorch": PyTorchProfiler,
}


def make_profiler(profiler: Any) -> Profiler:
    """The Trainer's profiler from its ``profiler`` argument (driver, and each Ray Train worker)."""
    if profiler is None:
        return PassThroughProfiler()
    if isinstance(profiler, Profiler):
        return profiler
    if isinstance(profiler, str) and profiler.lower() in BY_NAME:
        return BY_NAME[profiler.lower()]()
    raise MisconfigurationError(
        f"profiler={profiler!r}: use one of {sorted(BY_NAME)}, a lightray.profilers.Profiler, or None"
    )


__all__ = ["AdvancedProfiler", "PassThroughProfiler", "Profiler", "PyTorchProfiler", "SimpleProfiler"]

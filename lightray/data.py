"""Data loaders as the loop sees them: how many batches, limited how, with which step arguments."""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch.utils.data import DataLoader, RandomSampler

from lightray.errors import MisconfigurationError


def as_loader_list(loaders: Any, stage: str) -> list[Iterable]:
    """Evaluation loaders as a list (one entry per ``dataloader_idx``)."""
    if loaders is None:
        return []
    if isinstance(loaders, Mapping):
        return list(loaders.values())
    if isinstance(loaders, Sequence) and not isinstance(loaders, DataLoader):
        return list(loaders)
    if not isinstance(loaders, Iterable):
        raise MisconfigurationError(
            f"The {stage} dataloader is a {type(loaders).__name__}, which cannot be iterated; return a "
            "torch DataLoader (or any iterable of batches)."
        )
    return [loaders]


def length(loader: Iterable) -> float:
    """Number of batches of ``loader``, or ``inf`` when it has no length."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return math.inf


def limit_batches(loader: Iterable, limit: int | float, name: str) -> float:
    """How many batches to draw from ``loader`` under ``limit`` (a count, or a fraction of its length)."""
    total = length(loader)
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(total, limit)
    if limit == 1.0:
        return total
    if math.isinf(total):
        raise MisconfigurationError(
            f"`{name}={limit}` is a fraction, but the dataloader has no length; pass an int number of batches."
        )
    count = int(total * limit)
    if count == 0 and limit > 0:
        raise MisconfigurationError(
            f"`{name}={limit}` of {int(total)} batches is less than one batch; raise it or pass an int."
        )
    return count


def is_shuffled(loader: Iterable) -> bool:
    return isinstance(getattr(loader, "sampler", None), RandomSampler)


class StepArgs:
    """Builds the arguments of a step method once: ``batch``, then ``batch_idx`` and ``dataloader_idx``
    only when the method accepts them (as Lightning does)."""

    def __init__(self, fn: Any, pass_dataloader_idx: bool) -> None:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        var_args = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values())
        positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.with_batch_idx = var_args or len(positional) >= 2 or "batch_idx" in params
        self.with_dataloader_idx = pass_dataloader_idx and (
            var_args or len(positional) >= 3 or "dataloader_idx" in params
        )

    def __call__(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> tuple:
        if self.with_dataloader_idx:
            return (batch, batch_idx, dataloader_idx)
        if self.with_batch_idx:
            return (batch, batch_idx)
        return (batch,)

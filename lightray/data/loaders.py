"""Data loaders as the loop sees them: how many batches, limited how, with which step arguments."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, Sampler, SequentialSampler

from lightray.data.ray_dataset import is_ray_dataset
from lightray.errors import MisconfigurationError
from lightray.utilities.rank_zero import rank_zero_warn


def as_loader_list(loaders: Any, stage: str) -> list[Iterable]:
    """Evaluation loaders as a list (one entry per ``dataloader_idx``)."""
    if loaders is None:
        return []
    if is_ray_dataset(loaders):
        return [loaders]
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
        hint = " (or give the RayDataLoader num_rows)" if hasattr(loader, "num_rows") else ""
        raise MisconfigurationError(
            f"`{name}={limit}` is a fraction, but the dataloader has no length; pass an int number of batches{hint}."
        )
    count = int(total * limit)
    if count == 0 and limit > 0:
        raise MisconfigurationError(
            f"`{name}={limit}` of {int(total)} batches is less than one batch; raise it or pass an int."
        )
    return count


def take(loader: Iterable, limit: float, timed: Callable[[], AbstractContextManager] = nullcontext) -> Iterator:
    """The first ``limit`` batches of ``loader``, then its iterator is closed (a Ray Data iterator left open
    keeps prefetching on a thread). Each ``next`` runs inside ``timed()`` (a profiler's action)."""
    iterator = iter(loader)
    try:
        count = 0
        while count < limit:
            try:
                with timed():
                    batch = next(iterator)
            except StopIteration:
                return
            count += 1
            yield batch
    finally:
        close_iterator(iterator)


def close_iterator(iterator: Iterator) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def is_shuffled(loader: Iterable) -> bool:
    return isinstance(index_sampler(loader), RandomSampler)


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


class ResumableBatchSampler(Sampler[list[int]]):
    """Wraps a loader's batch sampler so a resumed epoch skips consumed batches without loading them.

    On an ordinary epoch it yields exactly what the wrapped sampler yields, drawing random numbers at
    the same moments, so wrapping changes nothing. After :meth:`skip_next`, the next epoch draws its
    order as the interrupted one did and drops the first ``skip`` index lists. :meth:`advance` does
    that at once (right after ``iter(loader)``), so the caller can restore the checkpoint's RNG
    state before anything else runs.
    """

    def __init__(self, batch_sampler: Iterable[list[int]]) -> None:
        self.batch_sampler = batch_sampler
        self._skip = 0
        self._current: dict[str, Any] | None = None  # the latest iteration's skip and started iterator

    @property
    def sampler(self) -> Any:
        return getattr(self.batch_sampler, "sampler", None)

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def skip_next(self, skip: int) -> None:
        self._skip = skip

    def advance(self) -> None:
        """Draw the latest iteration's order and skip now, unless the loader already started it."""
        if self._current is not None and self._current["batches"] is None:
            self._start(self._current)

    def __iter__(self) -> Iterator[list[int]]:
        # Not a generator itself: it runs inside ``iter(loader)`` but draws no random numbers there.
        current = {"skip": self._skip, "batches": None}
        self._skip, self._current = 0, current
        return self._generate(current)

    def _generate(self, current: dict[str, Any]) -> Iterator[list[int]]:
        yield from current["batches"] if current["batches"] is not None else self._start(current)

    def _start(self, current: dict[str, Any]) -> Iterator[list[int]]:
        batches = iter(self.batch_sampler)
        for _ in range(current["skip"]):
            next(batches, None)
        current["batches"] = batches
        return batches


def make_resumable(loader: Iterable) -> Iterable:
    """The same loader with a :class:`ResumableBatchSampler`; loaders it cannot rebuild come back unchanged.

    An ``IterableDataset``'s loader has no order to draw (torch refuses a batch sampler there): it stays as it is,
    and a resumed epoch reads and drops the batches the interrupted one consumed (a count-based position)."""
    if type(loader) is not DataLoader or loader.batch_sampler is None or isinstance(loader.dataset, IterableDataset):
        return loader
    if isinstance(loader.batch_sampler, ResumableBatchSampler):
        return loader
    return rebuild_loader(loader, batch_sampler=ResumableBatchSampler(loader.batch_sampler))


def in_order(loader: Iterable, prefix: str) -> Iterable:
    """``loader`` reading its dataset in order, for ``overfit_batches`` (the same batches every epoch); warns as
    Lightning does when the loader shuffled. ``prefix``: "train" or "val"."""
    if type(loader) is not DataLoader or isinstance(loader.dataset, IterableDataset):
        return loader
    if isinstance(loader.sampler, SequentialSampler):
        return loader
    rank_zero_warn(
        f"You requested to overfit but enabled {prefix} dataloader shuffling. We are turning off the {prefix} "
        "dataloader shuffling for you."
    )
    return rebuild_loader(loader, sampler=SequentialSampler(loader.dataset))  # type: ignore[arg-type]


def rebuild_loader(loader: DataLoader, **changes: Any) -> DataLoader:
    """A new DataLoader with ``loader``'s settings and ``changes`` (e.g. another sampler)."""
    params = inspect.signature(DataLoader.__init__).parameters
    skip = {"self", "batch_size", "shuffle", "sampler", "batch_sampler", "drop_last"}
    kwargs = {name: getattr(loader, name) for name in params if name not in skip and hasattr(loader, name)}
    if "multiprocessing_context" in kwargs:
        kwargs["multiprocessing_context"] = loader.multiprocessing_context
    if kwargs.get("num_workers", 0) == 0:
        kwargs.pop("prefetch_factor", None)
        kwargs["persistent_workers"] = False
    if "batch_sampler" not in changes:
        changes = {
            "batch_size": loader.batch_size,
            "drop_last": loader.drop_last,
            "sampler": loader.sampler,
            **changes,
        }
    return DataLoader(**kwargs, **changes)


def index_sampler(loader: Iterable) -> Any:
    """The sampler that decides the order (unwrapping batch samplers), or None."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is not None:
        return getattr(batch_sampler, "sampler", None)
    return getattr(loader, "sampler", None)


def set_epoch(loader: Iterable, epoch: int) -> None:
    """Tell the loader (a Ray Data loader) or its sampler (a DistributedSampler) which epoch starts."""
    for owner in (loader, index_sampler(loader)):
        method = getattr(owner, "set_epoch", None)
        if method is not None:
            method(epoch)
            return


def generators(loader: Iterable) -> list[torch.Generator]:
    """The torch generators that decide ``loader``'s order and worker seeds (beside the global RNG)."""
    found: list[torch.Generator] = []
    for candidate in (getattr(loader, "generator", None), getattr(index_sampler(loader), "generator", None)):
        if isinstance(candidate, torch.Generator) and all(candidate is not g for g in found):
            found.append(candidate)
    return found

"""``CombinedLoader`` (at Lightning's path, ``utilities.combined_loader``): several iterables read as one, in
Lightning's modes. A ``train_dataloader`` that returns a dict or a list of loaders trains on them combined in
``"max_size_cycle"`` mode, as in Lightning.

Modes: ``"min_size"`` stops with the shortest; ``"max_size_cycle"`` runs to the longest, starting the shorter ones
again when they end; ``"max_size"`` runs to the longest, with None for those that ended; ``"sequential"`` reads
one after the other. Iterating yields ``(batch, batch_idx, dataloader_idx)`` as Lightning's does, the batch shaped
as the iterables were given (a dict of batches for a dict of loaders). Runs where the loop runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from lightray.errors import MisconfigurationError

MODES = ("min_size", "max_size_cycle", "max_size", "sequential")


class CombinedLoader:
    """Lightning's ``CombinedLoader(iterables, mode="min_size")``."""

    def __init__(self, iterables: Any, mode: str = "min_size") -> None:
        if mode not in MODES:
            raise ValueError(f"Unsupported mode {mode!r}, please select one of: {MODES}.")
        self.iterables, self.mode = iterables, mode
        if isinstance(iterables, Mapping):
            self.keys: list[Any] | None = list(iterables)
            self.flattened: list[Iterable] = list(iterables.values())
        elif isinstance(iterables, list | tuple):
            self.keys, self.flattened = None, list(iterables)
        else:
            self.keys, self.flattened = None, [iterables]

    def map(self, fn: Callable[[Iterable], Iterable]) -> CombinedLoader:
        """The same combination of ``fn(iterable)`` for each iterable (e.g. each loader made ready for a rank)."""
        mapped = [fn(iterable) for iterable in self.flattened]
        if self.keys is not None:
            return CombinedLoader(dict(zip(self.keys, mapped)), self.mode)
        if isinstance(self.iterables, list | tuple):
            return CombinedLoader(type(self.iterables)(mapped), self.mode)
        return CombinedLoader(mapped[0], self.mode)

    def __len__(self) -> int:
        lengths = [_length(iterable) for iterable in self.flattened]
        if not lengths:
            return 0
        total = sum(lengths) if self.mode == "sequential" else min(lengths) if self.mode == "min_size" else max(lengths)
        if math.isinf(total):
            raise TypeError("a CombinedLoader of iterables without a length has no length")
        return int(total)

    def shaped(self, values: list[Any]) -> Any:
        """``values`` (one per iterable) in the shape the iterables were given."""
        if self.keys is not None:
            return dict(zip(self.keys, values))
        if isinstance(self.iterables, list | tuple):
            return type(self.iterables)(values)
        return values[0]

    def __iter__(self) -> Iterator[tuple[Any, int, int]]:
        # the iterators start here, not at the first batch: a shuffling DataLoader draws its seed when started,
        # and the loop starts an epoch's iterator as Lightning does, before that epoch's hooks
        if self.mode == "sequential":
            first = iter(self.flattened[0]) if self.flattened else iter(())
            return self._one_after_another(first)
        return self._together([iter(iterable) for iterable in self.flattened])

    def _one_after_another(self, first: Iterator) -> Iterator[tuple[Any, int, int]]:
        for dataloader_idx in range(len(self.flattened)):
            iterator = first if dataloader_idx == 0 else iter(self.flattened[dataloader_idx])
            for batch_idx, batch in enumerate(iterator):
                yield batch, batch_idx, dataloader_idx

    def _together(self, iterators: list[Iterator]) -> Iterator[tuple[Any, int, int]]:
        ended = [False] * len(iterators)  # max_size_cycle: which have ended once
        batch_idx = 0
        while iterators:
            values, produced = [], False
            for i in range(len(iterators)):
                try:
                    values.append(next(iterators[i]))
                    produced = True
                    continue
                except StopIteration:
                    ended[i] = True
                if self.mode == "min_size" or (self.mode == "max_size_cycle" and all(ended)):
                    return
                if self.mode == "max_size":
                    values.append(None)
                else:  # max_size_cycle: start the shorter one again
                    iterators[i] = iter(self.flattened[i])
                    values.append(next(iterators[i]))
            if not produced and self.mode == "max_size":
                return
            yield self.shaped(values), batch_idx, 0
            batch_idx += 1

    def batches(self) -> Batches:
        """What the training loop iterates: the batches alone."""
        return Batches(self)


class Batches:
    """A ``CombinedLoader``'s batches without their indices, with its length; passes ``set_epoch`` on to each
    iterable (a DistributedSampler's)."""

    def __init__(self, combined: CombinedLoader) -> None:
        self.combined = combined

    def __iter__(self) -> Iterator[Any]:
        return (batch for batch, _, _ in iter(self.combined))

    def __len__(self) -> int:
        return len(self.combined)

    def set_epoch(self, epoch: int) -> None:
        from lightray.data.loaders import set_epoch

        for iterable in self.combined.flattened:
            set_epoch(iterable, epoch)


def combined_for_training(loaders: Any) -> CombinedLoader | None:
    """A dict or list of training loaders as Lightning combines them (``"max_size_cycle"``), a CombinedLoader as it
    is; None for one loader."""
    if isinstance(loaders, CombinedLoader):
        return loaders
    if isinstance(loaders, Mapping | list | tuple):
        if not loaders:
            raise MisconfigurationError("The training dataloaders are an empty collection: return at least one.")
        return CombinedLoader(loaders, "max_size_cycle")
    return None


def _length(iterable: Iterable) -> float:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return math.inf

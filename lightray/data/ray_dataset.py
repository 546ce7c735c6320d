"""Ray Data datasets as Trainer dataloaders: each training process reads its own equal shard, with a known length.

A ``ray.data.Dataset`` (or a :class:`RayDataLoader` that says how to batch it) stands wherever a DataLoader
does. Preprocessing stays Ray Data's own (``read_parquet``, ``map_batches``, ``random_shuffle``, ...) and runs
as Ray tasks across the cluster; this module only decides which rows each training process reads, and when.

On Ray Train workers, rank 0 opens one ``streaming_split(world_size, equal=True)`` of the epoch's dataset and
hands one iterator to each rank: every rank reads different rows, and the same number of them, so no rank of
a DDP group waits on another. In-process (``num_workers=0``) the whole dataset is iterated.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import torch

from lightray.errors import MisconfigurationError
from lightray.seed import global_seed

if TYPE_CHECKING:
    from lightray.strategies.strategy import Strategy

COUNT: Literal["count"] = "count"


def is_ray_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a ``ray.data.Dataset`` (without importing Ray when nothing else has)."""
    ray_data = sys.modules.get("ray.data")
    return ray_data is not None and isinstance(obj, ray_data.Dataset)


class RayDataLoader:
    """How the Trainer batches a Ray Data ``Dataset``. A bare ``Dataset`` gets this class's defaults.

    Build it anywhere (the driver script, a datamodule's ``*_dataloader`` hook); the loop iterates it in the
    process that trains: in-process, or on each Ray Train worker, where each rank reads its own shard.

    Args:
        dataset: the ``ray.data.Dataset``, preprocessing included.
        batch_size, dtypes, collate_fn, drop_last, prefetch_batches, local_shuffle_buffer_size: as
            ``Dataset.iter_torch_batches`` takes them.
        shuffle: reshuffle all rows every epoch (``random_shuffle`` seeded with ``seed + epoch``).
        seed: the shuffle seed; by default ``seed_everything``'s (else 0), so a resumed epoch has the same order.
        split: on several workers, give each rank its own shard (the default); the shards are equal, so up to
            ``world_size - 1`` rows of an epoch are left out. ``False``: every rank reads every row (e.g. a
            validation set that rank 0 must see whole).
        num_rows: rows per epoch. ``"count"`` (default) asks Ray Data once, when training starts: free for
            materialized datasets, otherwise it runs the pipeline once. An int skips that; ``None`` leaves the
            length unknown (no progress total; fractional ``val_check_interval`` and limits need a length).

    With ``Trainer(deterministic=True)`` the dataset keeps its row order (Ray Data's ``preserve_order``), so
    each rank reads the same rows in the same order every time: a resumed epoch then continues exactly.

    Example::

        ds = ray.data.read_parquet(path).map_batches(normalize)
        trainer.fit(model, train_dataloaders=RayDataLoader(ds, batch_size=64, shuffle=True))
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 256,
        *,
        shuffle: bool = False,
        seed: int | None = None,
        split: bool = True,
        num_rows: int | Literal["count"] | None = COUNT,
        drop_last: bool = False,
        dtypes: torch.dtype | dict[str, torch.dtype] | None = None,
        collate_fn: Callable[[dict[str, Any]], Any] | None = None,
        prefetch_batches: int = 1,
        local_shuffle_buffer_size: int | None = None,
    ) -> None:
        problems = []
        if not is_ray_dataset(dataset):
            problems.append(f"dataset is a {type(dataset).__name__}; pass a ray.data.Dataset")
        if not isinstance(batch_size, int) or batch_size < 1:
            problems.append(f"batch_size={batch_size!r}: use a positive int")
        if not (num_rows in (None, COUNT) or (isinstance(num_rows, int) and num_rows >= 0)):
            problems.append(f"num_rows={num_rows!r}: use an int >= 0, 'count' or None")
        if problems:
            raise MisconfigurationError("RayDataLoader: " + "; ".join(problems) + ".")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle, self.seed, self.split, self.num_rows = shuffle, seed, split, num_rows
        self.drop_last, self.dtypes, self.collate_fn = drop_last, dtypes, collate_fn
        self.prefetch_batches, self.local_shuffle_buffer_size = prefetch_batches, local_shuffle_buffer_size
        self._strategy: Strategy | None = None  # set by bind(): the process this copy serves
        self._rows: int | None = None  # rows this process reads per epoch, once known
        self._epoch = 0
        self._shard: tuple[int | None, Any] | None = None  # (epoch it was split for, this rank's iterator)

    # ----------------------------------------------------------------- set-up in the training process
    def bind(self, strategy: Strategy, deterministic: bool = False) -> RayDataLoader:
        """A copy for this process: its rank's shard and its number of batches (collective on workers)."""
        bound = copy.copy(self)
        bound._strategy, bound._shard = strategy, None
        if deterministic:
            bound.dataset.context.execution_options.preserve_order = True
        if strategy.world_size > 1:
            # lightray shows one progress display: the worker's own copy of the dataset stops drawing Ray Data's
            # bars and printing its plan each epoch (they would reach the driver from every split coordinator)
            bound.dataset.context.enable_progress_bars = False
            bound.dataset.context.print_on_execution_start = False
        bound._rows = bound._count_rows()
        return bound

    def _count_rows(self) -> int | None:
        strategy = self._strategy
        assert strategy is not None
        if self.num_rows is None:
            return None
        if self.num_rows == COUNT:
            total = strategy.broadcast(self.dataset.count() if strategy.is_global_zero else None)
        else:
            total = int(self.num_rows)
        return total // strategy.world_size if self._splits() else total  # an equal split drops the remainder

    def _splits(self) -> bool:
        return self.split and self._strategy is not None and self._strategy.world_size > 1

    # ----------------------------------------------------------------- what the loop asks
    def __len__(self) -> int:
        if self._rows is None:
            raise TypeError("the number of rows is unknown (num_rows=None, or the loader is not bound yet)")
        full, rest = divmod(self._rows, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def set_epoch(self, epoch: int) -> None:
        """The epoch about to start: it picks the shuffle seed (called by the loop, as for samplers)."""
        self._epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        strategy = self._strategy
        kwargs: dict[str, Any] = {
            "batch_size": self.batch_size,
            "dtypes": self.dtypes,
            "collate_fn": self.collate_fn,
            "drop_last": self.drop_last,
            "prefetch_batches": self.prefetch_batches,
        }
        if self.local_shuffle_buffer_size:
            rank = strategy.global_rank if strategy is not None else 0
            kwargs["local_shuffle_buffer_size"] = self.local_shuffle_buffer_size
            kwargs["local_shuffle_seed"] = self._seed() + 7919 * self._epoch + rank
        if self.collate_fn is None:  # a collate_fn decides its own device
            kwargs["device"] = str(strategy.root_device) if strategy is not None else "cpu"
        return iter(self._source().iter_torch_batches(**kwargs))

    def _seed(self) -> int:
        return self.seed if self.seed is not None else global_seed() or 0

    def _source(self) -> Any:
        """This epoch's dataset, or this rank's iterator over its shard of it (collective on workers)."""
        epoch_ds = self.dataset.random_shuffle(seed=self._seed() + self._epoch) if self.shuffle else self.dataset
        if not self._splits():
            return epoch_ds
        strategy = self._strategy
        assert strategy is not None
        key = self._epoch if self.shuffle else None  # without a shuffle one split serves every epoch
        if self._shard is None or self._shard[0] != key:
            splits = epoch_ds.streaming_split(strategy.world_size, equal=True) if strategy.is_global_zero else None
            # the iterators share one coordinator actor; every rank calls iter() at the same moment of the loop
            self._shard = (key, strategy.broadcast(splits)[strategy.global_rank])
        return self._shard[1]

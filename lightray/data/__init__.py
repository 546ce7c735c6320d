"""Data as the loop sees it: torch DataLoaders (``loaders``) and Ray Data datasets (``ray_dataset``).

``for_this_process`` is the one place where a user's loader becomes what this training process iterates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lightray.data.loaders import (
    ResumableBatchSampler,
    StepArgs,
    as_loader_list,
    close_iterator,
    generators,
    in_order,
    index_sampler,
    is_shuffled,
    length,
    limit_batches,
    make_resumable,
    rebuild_loader,
    set_epoch,
    take,
)
from lightray.data.ray_dataset import RayDataLoader, is_ray_dataset

if TYPE_CHECKING:
    from lightray.trainer import Trainer

__all__ = [
    "RayDataLoader",
    "ResumableBatchSampler",
    "StepArgs",
    "as_loader_list",
    "close_iterator",
    "for_this_process",
    "generators",
    "index_sampler",
    "is_ray_dataset",
    "is_shuffled",
    "length",
    "limit_batches",
    "in_order",
    "make_resumable",
    "rebuild_loader",
    "set_epoch",
    "take",
]


def for_this_process(loader: Any, trainer: Trainer, shuffle: bool | None = None) -> Iterable:
    """What this process iterates: a Ray Data dataset bound to its rank's shard, or the loader as the strategy
    prepares it (a DistributedSampler on workers). ``shuffle=None``: as the loader's own sampler does."""
    if is_ray_dataset(loader):
        loader = RayDataLoader(loader)
    if trainer.use_distributed_sampler or isinstance(loader, RayDataLoader):  # else the user's sampler stays
        shuffle = is_shuffled(loader) if shuffle is None else shuffle
        loader = trainer.strategy.process_dataloader(loader, shuffle=shuffle)
    if isinstance(loader, RayDataLoader):  # bound after the strategy checked there are CPUs left to read it
        loader = loader.bind(trainer.strategy, deterministic=bool(trainer.deterministic))
    return loader

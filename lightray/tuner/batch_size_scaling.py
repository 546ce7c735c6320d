"""The batch-size search (Lightning's ``scale_batch_size``): train a few steps at a batch size, double it while
that fits in memory ("power"), or narrow down between the last size that fit and the first that did not
("binsearch"); then put the weights, optimizer and loop back and leave the size found in the batch-size attribute.

Runs in one process (in-process, as in Lightning, where distributed strategies are refused), from ``on_fit_start``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from lightray.tuner.trial import Snapshot, get_attribute, run_training, set_attribute, swapped_settings
from lightray.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from lightray.loops.loop_state import LoopState
    from lightray.trainer import Trainer

_OOM_MESSAGES = ("CUDA out of memory.", "CUDA error: out of memory", "DefaultCPUAllocator: can't allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says the device ran out of memory (the errors Lightning's search treats as "too big")."""
    return isinstance(error, RuntimeError) and len(error.args) == 1 and any(m in str(error) for m in _OOM_MESSAGES)


def scale_batch_size(
    trainer: Trainer,
    mode: str = "power",
    steps_per_trial: int = 3,
    init_val: int = 2,
    max_trials: int = 25,
    batch_arg_name: str = "batch_size",
    margin: float = 0.05,
    max_val: int = 8192,
) -> int | None:
    """The largest batch size that trains without running out of memory, within ``max_trials`` and ``max_val``;
    it is left in ``batch_arg_name`` (on the module, its hparams or the datamodule) and returned."""
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping batch size scaler since `fast_dev_run` is enabled.")
        return None
    snapshot = Snapshot(trainer)
    search = _Search(trainer, batch_arg_name, max_val, copy.deepcopy(trainer.fit_loop.state))
    try:
        with swapped_settings(trainer, [], limit_train_batches=1.0, limit_val_batches=steps_per_trial,
                              max_steps=steps_per_trial):  # fmt: skip
            size, _ = search.adjust(value=init_val)
            if mode == "power":
                size = search.power(size, max_trials)
            else:
                size = search.binsearch(size, max_trials, margin)
            rank_zero_info(f"Finished batch size finder, will continue with full run using batch size {size}")
    finally:
        snapshot.restore()
    return size


class _Search:
    """The trials of one search: each trains ``max_steps`` steps from the same loop position."""

    def __init__(self, trainer: Trainer, name: str, max_val: int, start: LoopState) -> None:
        self.trainer, self.name, self.max_val, self.start = trainer, name, max_val, start

    def fits(self) -> bool:
        """One trial at the current size: True when it trained, False when it ran out of memory."""
        try:
            run_training(self.trainer, self.start)
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            if not is_out_of_memory(error):
                raise
            return False
        return True

    def adjust(self, factor: float = 1.0, value: int | None = None, desc: str | None = None) -> tuple[int, bool]:
        """Set the batch size to ``value`` (or times ``factor``), capped at ``max_val``; unchanged when the current
        size already covers the whole data set. Returns the new size and whether it changed."""
        module = self.trainer.lightning_module
        size = get_attribute(module, self.name)
        length = self.dataset_length()
        if length is not None and size >= length:
            rank_zero_info(f"The batch size {size} is greater or equal than the length of your dataset: {length}.")
            return size, False
        new_size = value if value is not None else int(size * factor)
        if new_size > self.max_val:
            if desc:
                rank_zero_info(f"Batch size {new_size} exceeds max_val limit {self.max_val}, capping at {self.max_val}")
            new_size = self.max_val
        if desc:
            rank_zero_info(f"Batch size {size} {desc}, trying batch size {new_size}")
        set_attribute(module, self.name, new_size)
        return new_size, new_size != size

    def dataset_length(self) -> int | None:
        loop = self.trainer.fit_loop
        loop.setup_data()
        dataset: Any = getattr(loop.train_loader, "dataset", None)
        try:
            return len(dataset)
        except TypeError:
            return None  # an iterable data set: no length to stop at

    def reload(self) -> None:
        self.trainer.fit_loop.reset()  # the loaders are built again with the new size

    def power(self, size: int, max_trials: int) -> int:
        any_success = False
        for trial in range(max_trials):
            if size >= self.max_val:
                rank_zero_info(f"Reached the maximum batch size limit of {self.max_val}. Stopping search.")
                break
            if self.fits():
                if trial + 1 >= max_trials:
                    break
                size, changed = self.adjust(factor=2.0, desc="succeeded")
                if not changed:
                    break
                self.reload()
                any_success = True
            else:
                size, _ = self.adjust(factor=0.5, desc="failed")
                self.reload()
                if any_success:
                    break
        return size

    def binsearch(self, size: int, max_trials: int, margin: float) -> int:
        low, high, count = 1, None, 0
        while True:
            if size >= self.max_val:
                rank_zero_info(f"Reached the maximum batch size limit of {self.max_val}. Stopping search.")
                break
            if self.fits():
                count += 1
                if count >= max_trials:
                    break
                low = size
                if high:
                    if high - low <= 1:
                        break
                    size, changed = self.adjust(value=(high + low) // 2, desc="succeeded")
                else:
                    size, changed = self.adjust(factor=2.0, desc="succeeded")
                if not changed:
                    break
                self.reload()
            else:
                high = size
                size, _ = self.adjust(value=(high + low) // 2, desc="failed")
                self.reload()
                if high - low <= 1:
                    break
        reduced = max(1, int(size * (1 - margin)))
        if margin > 0 and reduced != size:
            rank_zero_info(f"Applying margin of {margin:.1%}, reducing batch size from {size} to {reduced}")
            size = reduced
            set_attribute(self.trainer.lightning_module, self.name, size)
        return size

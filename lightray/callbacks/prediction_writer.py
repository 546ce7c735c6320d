"""BasePredictionWriter: write predictions as ``predict`` makes them, per batch or per epoch (for outputs too
large to keep, or to write from every rank on Ray)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer

INTERVALS = ("batch", "epoch", "batch_and_epoch")


class BasePredictionWriter(Callback):
    """Override ``write_on_batch_end`` and/or ``write_on_epoch_end``; ``write_interval`` picks which run. Runs in
    the training process (each Ray Train worker writes what its rank predicted)."""

    def __init__(self, write_interval: str = "batch") -> None:
        if write_interval not in INTERVALS:
            raise MisconfigurationError(f"`write_interval` should be one of {list(INTERVALS)}.")
        self.interval = write_interval

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:  # fmt: skip
        raise NotImplementedError()

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:  # fmt: skip
        raise NotImplementedError()

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        if self.interval in ("batch", "batch_and_epoch"):
            self.write_on_batch_end(trainer, pl_module, outputs, None, batch, batch_idx, dataloader_idx)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.interval in ("epoch", "batch_and_epoch"):
            self.write_on_epoch_end(trainer, pl_module, trainer.predict_outputs, [])

"""GradientAccumulationScheduler: change ``accumulate_grad_batches`` by epoch (``{0: 8, 4: 4, 8: 1}``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError
from lightray.hooks import is_overridden

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class GradientAccumulationScheduler(Callback):
    """From each epoch key of ``scheduling`` on, accumulate that many batches per optimizer step (1 before the
    first key). Leave the Trainer's ``accumulate_grad_batches`` at 1; automatic optimization only. Runs in the
    training process; on Ray each worker accumulates the same number of its own batches."""

    def __init__(self, scheduling: dict[int, int]) -> None:
        if not scheduling:
            raise TypeError("Empty dict cannot be interpreted correct")
        bad_keys = [k for k in scheduling if not isinstance(k, int) or isinstance(k, bool) or k < 0]
        if bad_keys:
            raise MisconfigurationError(
                f"Epoch should be an int greater than or equal to 0. Got {bad_keys} in scheduling={scheduling}"
            )
        bad_values = [v for v in scheduling.values() if not isinstance(v, int) or isinstance(v, bool) or v < 1]
        if bad_values:
            raise MisconfigurationError(
                f"Accumulation factor should be an int greater than 0. Got {bad_values} in scheduling={scheduling}"
            )
        self.scheduling = {0: 1, **scheduling} if 0 not in scheduling else dict(scheduling)
        self.epochs = sorted(self.scheduling)

    def going_to_accumulate_grad_batches(self) -> bool:
        return any(value > 1 for value in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        return self.scheduling[max(e for e in self.epochs if e <= epoch)]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.accumulate_grad_batches != 1:
            raise MisconfigurationError(
                f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) and a "
                "GradientAccumulationScheduler both set the accumulation: keep one. Put the Trainer's value in the "
                "schedule (its epoch-0 entry) and leave accumulate_grad_batches at 1."
            )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise MisconfigurationError(
                "Automatic gradient accumulation and the `GradientAccumulationScheduler` is not supported for manual "
                "optimization. Please remove the callback or switch to automatic optimization."
            )
        from lightray.core.module import LightningModule as Base

        custom = is_overridden(pl_module, "optimizer_step", Base) or is_overridden(
            pl_module, "optimizer_zero_grad", Base
        )
        if custom and self.going_to_accumulate_grad_batches():
            from lightray.utilities.rank_zero import rank_zero_warn

            rank_zero_warn(
                "When using `Trainer(accumulate_grad_batches != 1)` and overriding `LightningModule.optimizer_{step,"
                "zero_grad}`, the hooks will not be called on every batch (rather, they are called on every "
                "optimization step)."
            )

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)

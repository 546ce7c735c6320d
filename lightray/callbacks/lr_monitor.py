"""LearningRateMonitor: log each optimizer's learning rate (and optionally momentum) to the loggers."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class LearningRateMonitor(Callback):
    """Logs ``lr-<Optimizer>`` (``/pg<N>`` per extra parameter group) every step or epoch.

    ``logging_interval=None`` follows each scheduler's interval. Runs in the training process; the
    loggers write on global rank 0.
    """

    def __init__(self, logging_interval: str | None = None, log_momentum: bool = False, log_weight_decay: bool = False):
        if logging_interval not in (None, "step", "epoch"):
            raise MisconfigurationError(
                f"LearningRateMonitor(logging_interval={logging_interval!r}): use 'step', 'epoch' or None."
            )
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.loggers:
            raise MisconfigurationError(
                "LearningRateMonitor needs a logger; remove `logger=False` from the Trainer or drop the callback."
            )

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        every, step = trainer.log_every_n_steps, trainer.fit_loop.state.batches_that_stepped + 1  # every=0: never
        if self.logging_interval != "epoch" and every and step % every == 0:
            self._log(trainer, "step")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.logging_interval != "step":
            self._log(trainer, "epoch")

    def _log(self, trainer: Trainer, interval: str) -> None:
        stats: dict[str, float] = {}
        scheduled = {
            id(c.scheduler.optimizer): c for c in trainer.lr_scheduler_configs if hasattr(c.scheduler, "optimizer")
        }
        counts = Counter(type(opt).__name__ for opt in trainer.optimizers)
        seen: Counter[str] = Counter()
        for optimizer in trainer.optimizers:
            config = scheduled.get(id(optimizer))
            if self.logging_interval is None and (
                config is None and interval == "step" or config is not None and config.interval != interval
            ):
                continue
            kind = type(optimizer).__name__
            name = config.name if config is not None and config.name else f"lr-{kind}"
            if counts[kind] > 1:
                name = f"{name}-{seen[kind]}"
            seen[kind] += 1
            for i, group in enumerate(optimizer.param_groups):
                key = name if len(optimizer.param_groups) == 1 else f"{name}/pg{i + 1}"
                stats[key] = float(group["lr"])
                if self.log_momentum:
                    momentum = group.get("momentum", group.get("betas", (0.0,))[0])
                    stats[key + "-momentum"] = float(momentum)
                if self.log_weight_decay:
                    stats[key + "-weight_decay"] = float(group.get("weight_decay", 0.0))
        for key, value in stats.items():
            self.lrs.setdefault(key, []).append(value)
        if stats:
            for logger in trainer.loggers:
                logger.log_metrics(stats, step=trainer.fit_loop.state.batches_that_stepped)

"""EarlyStopping: stop training when a monitored metric stops improving."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class EarlyStopping(Callback):
    """Lightning's EarlyStopping: same arguments, same decisions, state kept across resume.

    Runs in the training process; under Ray every rank sees the same reduced metric and decides alike.
    """

    monitors_epoch_end = True  # on_train_epoch_end after the module's own: it sees what the module logged

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
    ) -> None:
        if mode not in ("min", "max"):
            raise MisconfigurationError(f"EarlyStopping(mode={mode!r}): use 'min' or 'max'.")
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(min_delta) if mode == "max" else -abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self._check_on_train_epoch_end = check_on_train_epoch_end
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score = torch.tensor(float("inf") if mode == "min" else float("-inf"))
        self.stopping_reason_message: str | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def _better(self, a: Any, b: Any) -> bool:
        return bool(torch.lt(a, b) if self.mode == "min" else torch.gt(a, b))

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            self._check_on_train_epoch_end = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._check_on_train_epoch_end and not self._skip(trainer):
            self._check(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._check_on_train_epoch_end and not self._skip(trainer):
            self._check(trainer)

    def _skip(self, trainer: Trainer) -> bool:
        return trainer.state.fn != "fit" or trainer.sanity_checking or bool(trainer.fast_dev_run)

    def _check(self, trainer: Trainer) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            if self.strict:
                raise MisconfigurationError(
                    f"EarlyStopping(monitor={self.monitor!r}) found no such metric; logged metrics: "
                    f"{sorted(trainer.callback_metrics)}. Log it with `self.log({self.monitor!r}, value)`, "
                    "monitor one of these, or pass strict=False to skip checks while it is missing."
                )
            return
        current = value.detach().float().squeeze().cpu()
        should_stop, reason = self._evaluate(current)
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = reason
        if reason and self.verbose and trainer.is_global_zero:
            print(reason)

    def _evaluate(self, current: torch.Tensor) -> tuple[bool, str | None]:
        if self.check_finite and not torch.isfinite(current):
            return True, f"Monitored metric {self.monitor} = {float(current)} is not finite. Stopping."
        if self.stopping_threshold is not None and self._better(current, self.stopping_threshold):
            return True, f"Stopping threshold reached: {self.monitor} = {float(current)}. Stopping."
        if self.divergence_threshold is not None and self._better(-current, -self.divergence_threshold):
            return True, f"Divergence threshold reached: {self.monitor} = {float(current)}. Stopping."
        if self._better(current - self.min_delta, self.best_score):
            self.best_score = current
            self.wait_count = 0
            return False, f"Metric {self.monitor} improved to {float(current):.6f}."
        self.wait_count += 1
        if self.wait_count >= self.patience:
            return True, (
                f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} records. "
                f"Best score: {float(self.best_score):.6f}. Stopping."
            )
        return False, None

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": self.best_score,
            "patience": self.patience,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]
        self.patience = state_dict["patience"]

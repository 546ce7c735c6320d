"""The overridable hooks of LightningModule and LightningDataModule, with Lightning 2.x names.

Every hook runs in the training process: in-process for local runs, and on every Ray Train worker
(each rank) when the Trainer runs on Ray, unless its docstring says otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import Optimizer

from lightray.errors import MisconfigurationError
from lightray.utilities.apply_func import move_to_device


class ModelHooks:
    """Hooks of the fit, validate, test and predict loops; all default to doing nothing."""

    def on_fit_start(self) -> None:
        """Called at the very beginning of fit, after setup and configure_optimizers."""

    def on_fit_end(self) -> None:
        """Called at the very end of fit."""

    def on_train_start(self) -> None:
        """Called after the sanity check, before the first training epoch."""

    def on_train_end(self) -> None:
        """Called after the last training epoch."""

    def on_validation_start(self) -> None:
        """Called when a validation run starts (during fit or validate)."""

    def on_validation_end(self) -> None:
        """Called when a validation run ends."""

    def on_test_start(self) -> None:
        """Called when the test run starts."""

    def on_test_end(self) -> None:
        """Called when the test run ends."""

    def on_predict_start(self) -> None:
        """Called when the predict run starts."""

    def on_predict_end(self) -> None:
        """Called when the predict run ends."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """Called before training_step. Return -1 to skip the rest of the epoch."""
        return None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Called after the optimizer step of a training batch (or after the batch when accumulating)."""

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before validation_step."""

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after validation_step."""

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before test_step."""

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after test_step."""

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called before predict_step."""

    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Called after predict_step."""

    def on_validation_model_zero_grad(self) -> None:
        """Frees the gradients before validation runs inside fit."""
        self.zero_grad(set_to_none=True)  # type: ignore[attr-defined]

    def on_validation_model_eval(self) -> None:
        """Puts the model in eval mode before validation."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_validation_model_train(self) -> None:
        """Puts the model back in train mode after validation during fit."""
        self.trainer.model.train()  # type: ignore[attr-defined]

    def on_test_model_eval(self) -> None:
        """Puts the model in eval mode before testing."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_test_model_train(self) -> None:
        """Puts the model back in train mode after testing."""
        self.trainer.model.train()  # type: ignore[attr-defined]

    def on_predict_model_eval(self) -> None:
        """Puts the model in eval mode before predicting."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_train_epoch_start(self) -> None:
        """Called at the start of each training epoch."""

    def on_train_epoch_end(self) -> None:
        """Called at the end of each training epoch, after its end-of-epoch validation."""

    def on_validation_epoch_start(self) -> None:
        """Called at the start of a validation epoch."""

    def on_validation_epoch_end(self) -> None:
        """Called at the end of a validation epoch."""

    def on_test_epoch_start(self) -> None:
        """Called at the start of the test epoch."""

    def on_test_epoch_end(self) -> None:
        """Called at the end of the test epoch."""

    def on_predict_epoch_start(self) -> None:
        """Called at the start of the predict epoch."""

    def on_predict_epoch_end(self) -> None:
        """Called at the end of the predict epoch."""

    def on_before_zero_grad(self, optimizer: Optimizer) -> None:
        """Called before ``optimizer.zero_grad()`` at the start of each accumulation window."""

    def on_before_backward(self, loss: torch.Tensor) -> None:
        """Called before ``loss.backward()``."""

    def on_after_backward(self) -> None:
        """Called after ``loss.backward()``, before the optimizer step; gradients are available."""

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Called before ``optimizer.step()``, before gradient clipping; gradients are unscaled."""

    def configure_model(self) -> None:
        """Create layers here to build them on the right device (called in every stage, before the optimizers)."""


class DataHooks:
    """Data hooks shared by LightningModule and LightningDataModule."""

    prepare_data_per_node: bool = True

    def prepare_data(self) -> None:
        """Download or write data. Called once per node (local rank 0) before setup; set no state here."""

    def setup(self, stage: str) -> None:
        """Build datasets and state; called on every process with stage fit, validate, test or predict."""

    def teardown(self, stage: str) -> None:
        """Called at the end of fit, validate, test or predict."""

    def train_dataloader(self) -> Any:
        """Return the training DataLoader (or a list/dict of them)."""
        raise MisconfigurationError(
            "`train_dataloader` must be implemented to be used with `Trainer.fit`: define it in your "
            "LightningModule or LightningDataModule, or pass `train_dataloaders=` to `fit`."
        )

    def val_dataloader(self) -> Any:
        """Return the validation DataLoader(s)."""
        raise MisconfigurationError(
            "`val_dataloader` must be implemented to validate: define it, or pass `dataloaders=`."
        )

    def test_dataloader(self) -> Any:
        """Return the test DataLoader(s)."""
        raise MisconfigurationError("`test_dataloader` must be implemented to test: define it, or pass `dataloaders=`.")

    def predict_dataloader(self) -> Any:
        """Return the predict DataLoader(s)."""
        raise MisconfigurationError(
            "`predict_dataloader` must be implemented to predict: define it, or pass `dataloaders=`."
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch before it is moved to the device."""
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move the batch to ``device``; override for custom batch types."""
        return move_to_device(batch, device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Alter the batch after it is on the device (e.g. GPU augmentations)."""
        return batch


class CheckpointHooks:
    """Hooks to add to or read from the checkpoint dict."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add entries to ``checkpoint`` before it is written (rank 0 writes it under Ray)."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read entries of ``checkpoint`` when training resumes from it."""


# Hooks removed in Lightning 2.0, with what replaces them; a module or callback defining one is an error.
REMOVED_MODULE_HOOKS = {
    "training_epoch_end": "on_train_epoch_end (keep the step outputs you need in an attribute)",
    "validation_epoch_end": "on_validation_epoch_end (keep the step outputs you need in an attribute)",
    "test_epoch_end": "on_test_epoch_end (keep the step outputs you need in an attribute)",
    "predict_epoch_end": "on_predict_epoch_end",
    "training_step_end": "training_step (do the whole step there)",
    "validation_step_end": "validation_step",
    "test_step_end": "test_step",
    "on_epoch_start": "on_train_epoch_start / on_validation_epoch_start / on_test_epoch_start",
    "on_epoch_end": "on_train_epoch_end / on_validation_epoch_end / on_test_epoch_end",
    "on_batch_start": "on_train_batch_start",
    "on_batch_end": "on_train_batch_end",
    "on_pretrain_routine_start": "on_fit_start",
    "on_pretrain_routine_end": "on_fit_start",
    "configure_sharded_model": "configure_model",
}
REMOVED_CALLBACK_HOOKS = {
    **REMOVED_MODULE_HOOKS,
    "on_init_start": "the callback's __init__",
    "on_init_end": "the callback's __init__",
    "on_keyboard_interrupt": "on_exception",
    "on_configure_sharded_model": "setup",
}


def check_removed_hooks(obj: object, removed: dict[str, str], what: str) -> None:
    """Raise one error naming every Lightning 1.x hook that ``obj`` defines, with its replacement."""
    found = [name for name in removed if callable(getattr(obj, name, None))]
    if found:
        lines = "\n".join(f"  - `{name}` -> use `{removed[name]}`" for name in found)
        raise MisconfigurationError(
            f"{what} `{type(obj).__name__}` defines hooks that Lightning 2.x (and lightray) removed; "
            f"rename them:\n{lines}"
        )


def is_overridden(obj: object, name: str, base: type) -> bool:
    """Whether ``obj`` overrides hook ``name`` of ``base`` (LightningModule, LightningDataModule, Callback): in its
    class or on the instance (``model.on_train_start = fn``); a hook set to None counts as absent. The one rule
    for skipping default hooks and finding steps and data sources."""
    attr = getattr(obj, name, None)
    if attr is None or not callable(attr):
        return False
    default = getattr(base, name, None)
    func = getattr(attr, "__func__", attr)  # a bound method: its function
    while hasattr(func, "__wrapped__"):  # a decorated hook: what it wraps
        func = func.__wrapped__
    return func is not default

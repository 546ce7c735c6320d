"""Hook dispatch: calls the callbacks' and the module's hooks by name, in Lightning's order.

Runs in the training process (in-process, or on each Ray Train worker). It indexes who overrides each
hook once per stage, so a step pays only for the hooks that do something.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from lightray.callbacks.callback import Callback
from lightray.core.datamodule import LightningDataModule
from lightray.core.module import LightningModule
from lightray.hooks import is_overridden
from lightray.profilers import PassThroughProfiler

if TYPE_CHECKING:
    from lightray.trainer import Trainer

_BATCH_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def monitors_epoch_end(callback: Callback) -> bool:
    """Whether ``callback``'s ``on_train_epoch_end`` runs after the module's (as Lightning runs checkpointing and
    early stopping), so it sees what the module logged there."""
    return bool(getattr(type(callback), "monitors_epoch_end", False))


class HookCaller:
    """Calls hooks for one Trainer; ``index`` must run when a stage attaches its module and callbacks."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.callbacks_by_hook: dict[str, list[Callback]] = {}
        self.module_noops: set[str] = set()
        self.data_hook_owner: dict[str, Any] = {}
        self.profiling = False  # whether the Trainer's profiler times hooks (not the pass-through one)

    def profile(self, action: str) -> Any:
        """``with hooks.profile("run_training_batch"):`` times the block when profiling, else costs nothing."""
        return self.trainer.profiler.profile(action) if self.profiling else contextlib.nullcontext()

    def index(self) -> None:
        """Remember who overrides each hook of the attached module, datamodule and callbacks."""
        trainer = self.trainer
        module, datamodule = trainer.lightning_module, trainer.datamodule
        self.profiling = not isinstance(trainer.profiler, PassThroughProfiler)
        self.module_noops = {name for name in NOOP_MODULE_HOOKS if not is_overridden(module, name, LightningModule)}
        self.data_hook_owner = {}
        for name in _BATCH_TRANSFER_HOOKS:
            if datamodule is not None and is_overridden(datamodule, name, LightningDataModule):
                self.data_hook_owner[name] = datamodule
            elif is_overridden(module, name, LightningModule):
                self.data_hook_owner[name] = module
            elif name == "transfer_batch_to_device" and trainer.strategy.root_device.type != "cpu":
                self.data_hook_owner[name] = module  # loaders yield CPU tensors: only other devices need a move
        self.callbacks_by_hook = {
            name: [cb for cb in trainer.callbacks if is_overridden(cb, name, Callback)]
            for name in vars(Callback)
            if name.startswith("on_") or name in ("setup", "teardown")
        }

    def call_callbacks(self, name: str, *args: Any, monitoring: bool | None = None, **kwargs: Any) -> None:
        """Call ``name`` on every callback that overrides it; ``monitoring`` picks one group of
        ``on_train_epoch_end`` (see :func:`monitors_epoch_end`)."""
        callbacks = self.callbacks_by_hook.get(name)
        if not callbacks:
            return
        trainer = self.trainer
        trainer.results.current_fx = name
        for callback in callbacks:
            if monitoring is None or monitors_epoch_end(callback) == monitoring:
                if self.profiling:
                    with trainer.profiler.profile(f"[Callback]{type(callback).__qualname__}.{name}"):
                        getattr(callback, name)(trainer, trainer.lightning_module, *args, **kwargs)
                else:
                    getattr(callback, name)(trainer, trainer.lightning_module, *args, **kwargs)

    def call_module(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self.module_noops:
            return None
        module = self.trainer.lightning_module
        self.trainer.results.current_fx = name
        if self.profiling:
            with self.trainer.profiler.profile(f"[LightningModule]{type(module).__qualname__}.{name}"):
                return getattr(module, name)(*args, **kwargs)
        return getattr(module, name)(*args, **kwargs)

    def call_hook(self, name: str, *args: Any) -> None:
        """Callbacks first, then the module: Lightning's order for the loop hooks."""
        self.call_callbacks(name, *args)
        self.call_module(name, *args)

    def call_on(self, owner: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a hook of a given owner (the module or the datamodule), with ``self.log`` attributed to it."""
        self.trainer.results.current_fx = name
        return getattr(owner, name)(*args, **kwargs)

    def call_data_hook(self, name: str, batch: Any, *args: Any) -> Any:
        """Batch-transfer hooks: the datamodule's when it overrides them, else the module's."""
        owner = self.data_hook_owner.get(name)
        if owner is None:
            return batch  # the default hook returns the batch unchanged
        return self.call_on(owner, name, batch, *args)

    def to_device(self, batch: Any, dataloader_idx: int) -> Any:
        batch = self.trainer.precision_plugin.convert_input(batch)
        batch = self.call_data_hook("on_before_batch_transfer", batch, dataloader_idx)
        batch = self.call_data_hook(
            "transfer_batch_to_device", batch, self.trainer.strategy.root_device, dataloader_idx
        )
        return self.call_data_hook("on_after_batch_transfer", batch, dataloader_idx)


# Module hooks whose default does nothing: skipped unless the module overrides them.
NOOP_MODULE_HOOKS = [
    "on_fit_start", "on_fit_end", "on_train_start", "on_train_end", "on_validation_start",
    "on_validation_end", "on_test_start", "on_test_end", "on_predict_start", "on_predict_end",
    "on_train_batch_start", "on_train_batch_end", "on_validation_batch_start", "on_validation_batch_end",
    "on_test_batch_start", "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end",
    "on_train_epoch_start", "on_train_epoch_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_test_epoch_start", "on_test_epoch_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "configure_model", "prepare_data", "setup", "teardown", "on_save_checkpoint", "on_load_checkpoint",
]  # fmt: skip

"""Hook dispatch: calls the callbacks' and the module's hooks by name, in Lightning's order.

Runs in the training process (in-process, or on each Ray Train worker). It indexes who overrides each
hook once per stage, so a step pays only for the hooks that do something. With a profiler it calls every hook
of every callback and of the module, as Lightning does, so the report names the same actions as Lightning's.
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
CALLBACK_HOOKS = [name for name in vars(Callback) if name.startswith("on_") or name in ("setup", "teardown")]


def monitors_epoch_end(callback: Callback) -> bool:
    """Whether ``callback``'s ``on_train_epoch_end`` runs after the module's (as Lightning runs checkpointing and
    early stopping), so it sees what the module logged there."""
    return bool(getattr(type(callback), "monitors_epoch_end", False))


class HookCaller:
    """Calls hooks for one Trainer; ``index`` must run when a stage attaches its module and callbacks.

    Profiler actions are named as Lightning names them: ``[Callback]<state_key>.<hook>``,
    ``[LightningModule]<class>.<hook>``, ``[LightningDataModule]<class>.<hook>``, ``[Strategy]<class>.<hook>``.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.callbacks_by_hook: dict[str, list[Callback]] = {}  # whom each hook calls: overriders, all if profiling
        self.callback_fx: set[str] = set()  # hooks some callback overrides: ``self.log`` there is attributed to them
        self.module_noops: set[str] = set()  # module hooks left at their default (they cannot log)
        self.module_skips: set[str] = set()  # module hooks not called: the noops, when not profiling
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
        # Lightning calls every module hook but configure_model (and prepare_data) only when overridden
        self.module_skips = self.module_noops & {"configure_model"} if self.profiling else self.module_noops
        self.data_hook_owner = {}
        for name in _BATCH_TRANSFER_HOOKS:
            if datamodule is not None and is_overridden(datamodule, name, LightningDataModule):
                self.data_hook_owner[name] = datamodule
            elif is_overridden(module, name, LightningModule):
                self.data_hook_owner[name] = module
            elif name == "transfer_batch_to_device" and trainer.strategy.root_device.type != "cpu":
                self.data_hook_owner[name] = module  # loaders yield CPU tensors: only other devices need a move
        overriding = {
            name: [cb for cb in trainer.callbacks if is_overridden(cb, name, Callback)] for name in CALLBACK_HOOKS
        }
        self.callback_fx = {name for name, callbacks in overriding.items() if callbacks}
        self.callbacks_by_hook = (
            {name: list(trainer.callbacks) for name in CALLBACK_HOOKS} if self.profiling else overriding
        )

    # ----------------------------------------------------------------- profiler actions
    def callback_action(self, callback: Callback, name: str) -> Any:
        if not self.profiling:
            return contextlib.nullcontext()
        return self.trainer.profiler.profile(f"[Callback]{callback.state_key}.{name}")

    def owner_action(self, owner: Any, name: str) -> Any:
        """The module's or the datamodule's hook ``name``."""
        if not self.profiling:
            return contextlib.nullcontext()
        kind = "LightningModule" if isinstance(owner, LightningModule) else "LightningDataModule"
        return self.trainer.profiler.profile(f"[{kind}]{type(owner).__name__}.{name}")

    def strategy_action(self, name: str) -> Any:
        """Where Lightning times its strategy: the steps, backward, ``batch_to_device`` and the start/end hooks."""
        if not self.profiling:
            return contextlib.nullcontext()
        return self.trainer.profiler.profile(f"[Strategy]{type(self.trainer.strategy).__name__}.{name}")

    # ----------------------------------------------------------------- calls
    def call_callbacks(self, name: str, *args: Any, monitoring: bool | None = None, **kwargs: Any) -> None:
        """Call ``name`` on every callback that overrides it; ``monitoring`` picks one group of
        ``on_train_epoch_end`` (see :func:`monitors_epoch_end`)."""
        callbacks = self.callbacks_by_hook.get(name)
        if not callbacks:
            return
        trainer = self.trainer
        if name in self.callback_fx:
            trainer.results.current_fx = name
        for callback in callbacks:
            hook = getattr(callback, name)
            if callable(hook) and (monitoring is None or monitors_epoch_end(callback) == monitoring):
                with self.callback_action(callback, name):
                    hook(trainer, trainer.lightning_module, *args, **kwargs)

    def call_checkpoint_hooks(self, name: str, checkpoint: dict[str, Any]) -> None:
        """``on_save_checkpoint``/``on_load_checkpoint`` of every callback (``self.log`` is not theirs to call)."""
        trainer = self.trainer
        for callback in trainer.callbacks:
            with self.callback_action(callback, name):
                getattr(callback, name)(trainer, trainer.lightning_module, checkpoint)

    def call_module(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self.module_skips:
            return None
        module = self.trainer.lightning_module
        hook = getattr(module, name)
        if not callable(hook):  # set to None
            return None
        if name not in self.module_noops:
            self.trainer.results.current_fx = name
        with self.owner_action(module, name):
            return hook(*args, **kwargs)

    def call_hook(self, name: str, *args: Any) -> None:
        """Callbacks first, then the module: Lightning's order for the loop hooks."""
        self.call_callbacks(name, *args)
        self.call_module(name, *args)

    def call_strategy(self, name: str, *args: Any) -> Any:
        """The strategy's ``name`` (``training_step``, ...); for the start/end points Lightning's strategies
        hook into (``on_train_start``, ...), lightray's have nothing to do: a profiler still records them."""
        method = getattr(self.trainer.strategy, name, None)
        with self.strategy_action(name):
            return method(*args) if method is not None else None

    def call_on(self, owner: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a hook of a given owner (the module or the datamodule), with ``self.log`` attributed to it."""
        self.trainer.results.current_fx = name
        with self.owner_action(owner, name):
            return getattr(owner, name)(*args, **kwargs)

    def call_configure_callbacks(self, module: LightningModule) -> Any:
        """``configure_callbacks`` (before ``index``): timed when the stage runs here (on Ray, by the workers)."""
        trainer = self.trainer
        if isinstance(trainer.profiler, PassThroughProfiler) or trainer.ray_options.on_ray:
            return module.configure_callbacks()
        with trainer.profiler.profile(f"[LightningModule]{type(module).__name__}.configure_callbacks"):
            return module.configure_callbacks()

    def call_data_hook(self, name: str, batch: Any, *args: Any) -> Any:
        """Batch-transfer hooks: the datamodule's when it overrides them, else the module's."""
        owner = self.data_hook_owner.get(name)
        if owner is None:  # the default would return the batch as it is: a profiler times it without a call
            with self.owner_action(self.trainer.lightning_module, name):
                return batch
        return self.call_on(owner, name, batch, *args)

    def to_device(self, batch: Any, dataloader_idx: int) -> Any:
        batch = self.trainer.precision_plugin.convert_input(batch)
        batch = self.call_data_hook("on_before_batch_transfer", batch, dataloader_idx)
        with self.strategy_action("batch_to_device"):
            batch = self.call_data_hook(
                "transfer_batch_to_device", batch, self.trainer.strategy.root_device, dataloader_idx
            )
            return self.call_data_hook("on_after_batch_transfer", batch, dataloader_idx)


# Module hooks whose default does nothing: skipped unless the module overrides them (or a profiler runs).
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

"""What the tuner's searches share: short runs of the fit loop with the trainer's callbacks, loggers and limits
swapped for the search's own, and all of them put back afterwards.

Runs where the loop runs: in-process, or on each Ray Train worker (from a callback's ``on_fit_start``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lightray.checkpoint import LoadedCheckpoint, dump_checkpoint, restore_modules_and_callbacks
from lightray.errors import MisconfigurationError
from lightray.loops import stage

if TYPE_CHECKING:
    from lightray.callbacks.callback import Callback
    from lightray.core.module import LightningModule
    from lightray.loops.loop_state import LoopState
    from lightray.trainer import Trainer

_LIMITS = ("max_steps", "limit_train_batches", "limit_val_batches")


@contextlib.contextmanager
def swapped_settings(trainer: Trainer, callbacks: list[Callback], **limits: Any) -> Iterator[None]:
    """Run the block with only ``callbacks``, no loggers and the given ``max_steps``/``limit_*_batches``; the loop's
    position and data are put back afterwards (the next training reads its loaders afresh), as Lightning's tuner
    does with its trials."""
    loop = trainer.fit_loop
    saved = {name: getattr(trainer, name) for name in (*_LIMITS, "callbacks", "loggers")}
    position = copy.deepcopy(loop.state)
    trainer.callbacks, trainer.loggers = list(callbacks), []
    for name, value in limits.items():
        setattr(trainer, name, value)
    trainer.hooks.index()
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(trainer, name, value)
        trainer.hooks.index()
        loop.state = position
        loop.reset()
        trainer.should_stop = False
        stage.reset_metrics(trainer)


def run_training(trainer: Trainer, start: LoopState) -> None:
    """One trial: the fit loop's training epochs from position ``start``, until the trial's limits stop it."""
    trainer.fit_loop.state = copy.deepcopy(start)
    trainer.should_stop = False
    trainer.fit_loop.train()


class Snapshot:
    """The trainer's state in memory (weights, optimizers, schedulers, callbacks), put back by ``restore``, as
    Lightning's tuner saves and restores a checkpoint file around its search. The weights and optimizer state are
    each process's own tensors (its shards under FSDP, whose checkpoints leave them out), never gathered."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        checkpoint = dump_checkpoint(trainer)
        checkpoint.pop("optimizer_states")
        self.weights = copy.deepcopy(trainer.lightning_module.state_dict())
        self.optimizer_states = [copy.deepcopy(optimizer.state_dict()) for optimizer in trainer.optimizers]
        self.checkpoint = {**copy.deepcopy({**checkpoint, "state_dict": {}}), "state_dict": self.weights}

    def restore(self) -> None:
        trainer, checkpoint = self.trainer, self.checkpoint
        trainer.lightning_module.load_state_dict(self.weights)
        restore_modules_and_callbacks(trainer, LoadedCheckpoint(checkpoint, "<the tuner's snapshot>"), False)
        for optimizer, state in zip(trainer.optimizers, self.optimizer_states):
            optimizer.load_state_dict(state)
        for config, state in zip(trainer.lr_scheduler_configs, checkpoint["lr_schedulers"]):
            config.scheduler.load_state_dict(state)
        trainer.precision_plugin.load_state_dict(checkpoint.get("MixedPrecision", {}))


def holders_of(module: LightningModule, name: str) -> list[Any]:
    """Every place that holds ``name``, in Lightning's order: the module, its ``hparams``, the datamodule, its
    ``hparams``."""
    datamodule = module.trainer.datamodule if module.trainer is not None else None
    holders: list[Any] = []
    for owner in (module, datamodule):
        if owner is None:
            continue
        if hasattr(owner, name):
            holders.append(owner)
        if name in getattr(owner, "hparams", {}):
            holders.append(owner.hparams)
    return holders


def get_attribute(module: LightningModule, name: str) -> Any:
    """The value of ``name`` from its last holder (the datamodule's wins, as in Lightning)."""
    holder = holders_of(module, name)[-1]
    return holder[name] if isinstance(holder, dict) else getattr(holder, name)


def set_attribute(module: LightningModule, name: str, value: Any) -> None:
    """Set ``name`` in every place that holds it."""
    for holder in holders_of(module, name):
        if isinstance(holder, dict):
            holder[name] = value
        else:
            setattr(holder, name, value)


def check_single_process(trainer: Trainer, what: str) -> None:
    if trainer.world_size > 1:
        raise MisconfigurationError(
            f"{what} runs in one process, as in Lightning (it is not supported with distributed strategies): run it "
            "with a Trainer without `num_workers`/`devices`, then train on Ray with the value it found."
        )

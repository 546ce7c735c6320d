"""What every stage does around its loop: set-up (prepare_data, setup, configure_model) and teardown, and
sending metrics to the loggers. Runs in the training process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightray.metrics import to_floats

if TYPE_CHECKING:
    from lightray.trainer import Trainer


def setup(trainer: Trainer, stage: str) -> None:
    """prepare_data, setup and configure_model, in Lightning's order."""
    hooks, module, datamodule = trainer.hooks, trainer.lightning_module, trainer.datamodule
    trainer.strategy.connect(module)
    for owner in (datamodule, module):
        # once per node (local rank 0), or once in all (global rank 0) when the owner says so
        if owner is not None and (trainer.local_rank if owner.prepare_data_per_node else trainer.global_rank) == 0:
            hooks.call_on(owner, "prepare_data")
    trainer.strategy.barrier("prepare_data")
    if datamodule is not None:
        datamodule.setup(stage)
    hooks.call_callbacks("setup", stage)
    hooks.call_module("setup", stage)
    hooks.call_module("configure_model")
    trainer.strategy.connect(module)  # configure_model may have created parameters
    log_hyperparams(trainer)


def log_hyperparams(trainer: Trainer) -> None:
    module, datamodule = trainer.lightning_module, trainer.datamodule
    params = dict(module.hparams_initial) if module.logs_hyperparameters else {}
    if datamodule is not None:
        params.update(datamodule.hparams)
    for logger in trainer.loggers:
        if params:
            logger.log_hyperparams(params)
        logger.save()


def teardown(trainer: Trainer, stage: str) -> None:
    if trainer.datamodule is not None:
        trainer.datamodule.teardown(stage)
    trainer.hooks.call_callbacks("teardown", stage)
    trainer.hooks.call_module("teardown", stage)
    trainer.strategy.teardown()


def send_to_loggers(trainer: Trainer, metrics: dict[str, Any], step: int) -> None:
    """Record ``metrics`` as logged and hand them to every logger as numbers (with the epoch) at ``step``."""
    numbers = to_floats(metrics)
    trainer.logged_metrics.update(metrics)
    if not trainer.loggers:
        return
    numbers.setdefault("epoch", float(trainer.current_epoch))
    for logger in trainer.loggers:
        logger.log_metrics(numbers, step=step)

"""What every stage does around its loop: set-up (prepare_data, setup, configure_model) and teardown, and
sending metrics to the loggers. Runs in the training process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightray.core.datamodule import LightningDataModule
from lightray.core.module import LightningModule
from lightray.hooks import is_overridden
from lightray.metrics import to_floats

if TYPE_CHECKING:
    from lightray.trainer import Trainer


def setup(trainer: Trainer, stage: str) -> None:
    """prepare_data, setup and configure_model, in Lightning's order."""
    hooks, module, datamodule = trainer.hooks, trainer.lightning_module, trainer.datamodule
    trainer.profiler.setup(stage, trainer.local_rank, trainer.log_dir)
    trainer.strategy.connect(module)
    for owner, base in ((datamodule, LightningDataModule), (module, LightningModule)):
        if owner is None or not is_overridden(owner, "prepare_data", base):
            continue  # only an override is called (and profiled), as in Lightning
        # once per node (local rank 0), or once in all (global rank 0) when the owner says so
        if (trainer.local_rank if owner.prepare_data_per_node else trainer.global_rank) == 0:
            hooks.call_on(owner, "prepare_data")
    trainer.strategy.barrier("prepare_data")
    # Lightning passes the stage by keyword: overrides may name it differently only after a `*`
    if datamodule is not None:
        hooks.call_on(datamodule, "setup", stage=stage)
    hooks.call_callbacks("setup", stage=stage)
    hooks.call_module("setup", stage=stage)
    hooks.call_module("configure_model")
    trainer.strategy.connect(module)  # configure_model may have created parameters
    trainer.precision_plugin.convert_module(module)
    trainer.strategy.shard_module()  # FSDP: before the optimizers exist, so they hold the shards
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
        trainer.hooks.call_on(trainer.datamodule, "teardown", stage=stage)
    trainer.hooks.call_callbacks("teardown", stage=stage)
    trainer.hooks.call_module("teardown", stage=stage)
    trainer.strategy.teardown()
    trainer.profiler.describe()  # the stage's report, once its hooks ran
    trainer.profiler.teardown(stage)


def reset_metrics(trainer: Trainer) -> None:
    """Forget the metrics of a previous stage (or of the sanity check), as Lightning does when a stage starts."""
    trainer.callback_metrics.clear()
    trainer.logged_metrics.clear()
    trainer.progress_bar_metrics.clear()


def publish_metrics(trainer: Trainer) -> None:
    """Keep what the running pass shows now in the trainer's metric dicts (Lightning does this after each batch
    and each epoch; reading the dicts in between shows the same)."""
    callback, logged, pbar = trainer.results.view()
    trainer.callback_metrics.update(callback)
    trainer.logged_metrics.update(logged)
    trainer.progress_bar_metrics.update(pbar)


def send_to_loggers(trainer: Trainer, metrics: dict[str, Any], step: int, with_epoch: bool = True) -> None:
    """Record ``metrics`` as logged and hand them to every logger as numbers at ``step`` (with the epoch, except
    for evaluation steps, as Lightning logs them)."""
    numbers = to_floats(metrics)
    trainer.logged_metrics.update(metrics)
    if not trainer.loggers:
        return
    if with_epoch:
        numbers.setdefault("epoch", float(trainer.current_epoch))
    for logger in trainer.loggers:
        logger.log_metrics(numbers, step=step)

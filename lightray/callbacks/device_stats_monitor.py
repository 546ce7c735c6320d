"""DeviceStatsMonitor: log the training device's statistics (CUDA memory, CPU load) to the loggers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


def cpu_stats() -> dict[str, float]:
    """System-wide CPU, memory and swap use in percent, under Lightning's names (from psutil, as Lightning)."""
    import psutil

    return {
        "cpu_vm_percent": float(psutil.virtual_memory().percent),
        "cpu_percent": float(psutil.cpu_percent()),
        "cpu_swap_percent": float(psutil.swap_memory().percent),
    }


def device_stats(device: torch.device) -> dict[str, float]:
    """What Lightning's accelerator reports for ``device``: the CUDA caching allocator's ``memory_stats`` on a
    GPU, the CPU stats on the CPU (nothing for other devices)."""
    if device.type == "cuda":
        return {key: float(value) for key, value in torch.cuda.memory_stats(device).items()}
    if device.type == "cpu":
        return cpu_stats()
    return {}


class DeviceStatsMonitor(Callback):
    """Logs the device's statistics at the start and end of every training, validation and test batch that
    Lightning logs at (every ``log_every_n_steps``), under ``DeviceStatsMonitor.<hook>/<stat>``.

    On a GPU the stats are ``torch.cuda.memory_stats`` (bytes and counts); on the CPU, or on any device with
    ``cpu_stats=True``, ``cpu_percent``, ``cpu_vm_percent`` and ``cpu_swap_percent`` (psutil).
    ``cpu_stats=False`` leaves the CPU stats out (on the CPU nothing is logged). Needs a logger for ``fit``.

    Runs in the training process: in-process, or in each Ray Train worker, where only rank 0 has loggers
    (the user's, and the one that sends rows to the driver).
    """

    def __init__(self, cpu_stats: bool | None = None) -> None:
        self.cpu_stats = cpu_stats
        self._eval_batches = 0  # batches of the running evaluation pass, counting the current one

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return  # a Ray worker other than rank 0 has no loggers by design (Lightning's log only on rank 0)
        from lightray.ray_backend.history import HistoryLogger

        if not [logger for logger in trainer.loggers if not isinstance(logger, HistoryLogger)]:
            raise MisconfigurationError(
                "Cannot use `DeviceStatsMonitor` callback with `Trainer(logger=False)`: give the Trainer a logger "
                "or drop the callback."
            )

    def _stats(self, trainer: Trainer) -> dict[str, float]:
        device = trainer.strategy.root_device
        if device.type == "cpu":
            return {} if self.cpu_stats is False else cpu_stats()
        stats = device_stats(device)
        if self.cpu_stats:
            stats.update(cpu_stats())
        return stats

    def _log(self, trainer: Trainer, hook: str, count: int) -> None:
        """Log at Lightning's steps: ``count`` (the batch about to run or just run, from 1) a multiple of
        ``log_every_n_steps``, or when the trainer should stop; never with ``log_every_n_steps=0``."""
        every = trainer.log_every_n_steps
        if not trainer.loggers or every == 0 or not (count % every == 0 or trainer.should_stop):
            return
        stats = self._stats(trainer)
        if not stats:
            return
        prefix = f"{type(self).__qualname__}.{hook}"
        for logger in trainer.loggers:
            separator = getattr(logger, "group_separator", "/")  # Lightning's Logger has one ("/" by default)
            logger.log_metrics(
                {f"{prefix}{separator}{key}": value for key, value in stats.items()},
                step=trainer.fit_loop.state.batches_that_stepped,
            )

    def _train_count(self, trainer: Trainer) -> int:
        return trainer.fit_loop.state.batches_that_stepped + 1

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._log(trainer, "on_train_batch_start", self._train_count(trainer))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._log(trainer, "on_train_batch_end", self._train_count(trainer))

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_batches = 0

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_batches = 0

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._eval_batches += 1
        self._log(trainer, "on_validation_batch_start", self._eval_batches)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._log(trainer, "on_validation_batch_end", self._eval_batches)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._eval_batches += 1
        self._log(trainer, "on_test_batch_start", self._eval_batches)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._log(trainer, "on_test_batch_end", self._eval_batches)

"""Runs a stage in this process: the local launcher, and the one each Ray Train worker uses."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from lightray import storage
from lightray.run_summary import summary
from lightray.states import TrainerFn
from lightray.tune import trial as tune_trial
from lightray.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from lightray.ray_backend.options import RayOptions
    from lightray.trainer import Trainer


class InProcessLauncher:
    """Runs the loop here; on failure tells callbacks, datamodule and loggers, then re-raises."""

    def __init__(self, options: RayOptions) -> None:
        self.options = options

    def launch(self, trainer: Trainer, fn: TrainerFn, run: Callable[[], Any]) -> Any:
        if fn == TrainerFn.FITTING:
            tune_trial.match_workers(self.options)  # a Tune trial that counted workers must not train here
        started = time.monotonic()
        try:
            with torch.autograd.detect_anomaly() if trainer.detect_anomaly else contextlib.nullcontext():
                result = run()
            storage.wait_for_writes()  # checkpoints written in the background are in place when the stage returns
        except BaseException as exception:
            trainer.hooks.call_callbacks("on_exception", exception)
            if trainer.datamodule is not None:
                trainer.datamodule.on_exception(exception)
            for logger in trainer.loggers:
                logger.finalize("failed")
            with contextlib.suppress(Exception):
                storage.wait_for_writes()  # finish what was saved before the failure; the failure itself wins
            raise
        finally:
            trainer.results.current_fx = None
        for logger in trainer.loggers:
            logger.finalize("success")
        report = summary(trainer, fn, time.monotonic() - started)
        if report and trainer.is_global_zero:
            rank_zero_info(report)
        return result

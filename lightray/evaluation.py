"""The evaluation passes of the loop: validation (also inside fit), test, and predict.

Functions of the :class:`~lightray.loop.Loop` (they are its methods ``evaluate``, ``run_evaluation``
and ``run_predict``), kept here so the fit loop reads on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from lightray import data
from lightray.metrics import MetricStore, to_floats

if TYPE_CHECKING:
    from lightray.loop import Loop


def evaluate(
    self: Loop, stage: str, loaders: list[Iterable], limits: list[float], inside_fit: bool = False
) -> list[dict[str, float]]:
    """One pass over the validation or test loaders; returns the epoch metrics per loader."""
    trainer, module = self.trainer, self.trainer.lightning_module
    prefix = "validation" if stage == "validate" else "test"
    train_metrics, self.metrics = self.metrics, MetricStore(trainer.strategy)
    trainer.validating, trainer.testing = stage == "validate", stage == "test"
    step_fn = getattr(trainer.strategy, f"{prefix}_step")
    step_args = data.StepArgs(getattr(module, f"{prefix}_step"), pass_dataloader_idx=len(loaders) > 1)
    grad_context = torch.no_grad() if inside_fit or not trainer.inference_mode else torch.inference_mode()

    self.eval_limits, self.eval_batches_done = list(limits), 0
    self.call_module(f"on_{prefix}_model_eval")
    self.call_hook(f"on_{prefix}_start")
    self.call_hook(f"on_{prefix}_epoch_start")
    per_loader: list[dict[str, float]] = []
    with grad_context:
        for dl_idx, (loader, limit) in enumerate(zip(loaders, limits)):
            self.metrics.dataloader_idx = dl_idx if len(loaders) > 1 else None
            for batch_idx, batch in enumerate(data.take(loader, limit)):
                batch = self.to_device(batch, dl_idx)
                self.metrics.batch = batch
                self.metrics.clear_step_values()
                hook_args: tuple = (batch, batch_idx, dl_idx) if len(loaders) > 1 else (batch, batch_idx)
                self.call_hook(f"on_{prefix}_batch_start", *hook_args)
                self.metrics.current_fx = f"{prefix}_step"
                with trainer.precision_plugin.forward_context():
                    output = step_fn(*step_args(batch, batch_idx, dl_idx))
                self.eval_batches_done += 1
                self.call_callbacks(f"on_{prefix}_batch_end", output, *hook_args)
                self.call_module(f"on_{prefix}_batch_end", output, *hook_args)
                callback, _, pbar = self.metrics.step_metrics()
                trainer.callback_metrics.update(callback)
                trainer.progress_bar_metrics.update(pbar)
    self.metrics.dataloader_idx = None
    self.call_hook(f"on_{prefix}_epoch_end")
    callback, logged, pbar = self.metrics.epoch_metrics()
    if not self.sanity_checking:
        trainer.callback_metrics.update(callback)
        trainer.progress_bar_metrics.update(pbar)
        if logged:
            self.log_to_loggers(logged, step=self.state.batches_that_stepped if inside_fit else self.state.epoch)
        numbers = to_floats(logged)
        per_loader = [_metrics_of_loader(numbers, i, len(loaders)) for i in range(len(loaders))]
    self.call_hook(f"on_{prefix}_end")
    self.call_module(f"on_{prefix}_model_train")
    self.metrics = train_metrics
    trainer.validating = trainer.testing = False
    return per_loader


def run_evaluation(self: Loop, stage: str) -> list[dict[str, float]]:
    """``Trainer.validate`` / ``Trainer.test``: set-up, one evaluation pass, teardown."""
    trainer = self.trainer
    self.setup(stage)
    trainer._restore_checkpoint_for_eval()
    key, limit_name = ("val", "limit_val_batches") if stage == "validate" else ("test", "limit_test_batches")
    loaders = data.as_loader_list(trainer._dataloader_source(key), stage)
    loaders = [data.for_this_process(dl, trainer, shuffle=False) for dl in loaders]
    limits = [data.limit_batches(dl, getattr(trainer, limit_name), limit_name) for dl in loaders]
    results = self.evaluate(stage, loaders, limits) if loaders else []
    self.teardown(stage)
    return results


def run_predict(self: Loop) -> list[Any]:
    trainer, module = self.trainer, self.trainer.lightning_module
    self.setup("predict")
    trainer._restore_checkpoint_for_eval()
    loaders = data.as_loader_list(trainer._dataloader_source("predict"), "predict")
    loaders = [data.for_this_process(dl, trainer, shuffle=False) for dl in loaders]
    limits = [data.limit_batches(dl, trainer.limit_predict_batches, "limit_predict_batches") for dl in loaders]
    step_args = data.StepArgs(module.predict_step, pass_dataloader_idx=len(loaders) > 1)
    predictions: list[list[Any]] = []
    self.eval_limits, self.eval_batches_done = list(limits), 0
    self.call_module("on_predict_model_eval")
    self.call_hook("on_predict_start")
    self.call_hook("on_predict_epoch_start")
    context = torch.inference_mode() if trainer.inference_mode else torch.no_grad()
    with context:
        for dl_idx, (loader, limit) in enumerate(zip(loaders, limits)):
            outputs: list[Any] = []
            for batch_idx, batch in enumerate(data.take(loader, limit)):
                batch = self.to_device(batch, dl_idx)
                hook_args: tuple = (batch, batch_idx, dl_idx) if len(loaders) > 1 else (batch, batch_idx)
                self.call_hook("on_predict_batch_start", *hook_args)
                self.metrics.current_fx = "predict_step"
                with trainer.precision_plugin.forward_context():
                    output = trainer.strategy.predict_step(*step_args(batch, batch_idx, dl_idx))
                self.eval_batches_done += 1
                self.call_callbacks("on_predict_batch_end", output, *hook_args)
                self.call_module("on_predict_batch_end", output, *hook_args)
                outputs.append(output)
            predictions.append(outputs)
    self.call_hook("on_predict_epoch_end")
    self.call_hook("on_predict_end")
    self.teardown("predict")
    return predictions[0] if len(predictions) == 1 else predictions


def _metrics_of_loader(metrics: dict[str, float], idx: int, count: int) -> dict[str, float]:
    if count == 1:
        return dict(metrics)
    suffix = f"/dataloader_idx_{idx}"
    return {k: v for k, v in metrics.items() if k.endswith(suffix) or "/dataloader_idx_" not in k}

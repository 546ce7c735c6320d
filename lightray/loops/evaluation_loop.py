"""The evaluation passes: validation (also inside fit), test and predict, and the results table.

Functions of the trainer, called by the fit loop and by ``Trainer.validate``/``test``/``predict``; they run in
the training process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from lightray import checkpoint, data
from lightray.core.module import LightningModule
from lightray.hooks import is_overridden
from lightray.loops import stage as stage_hooks
from lightray.metrics import MetricStore, to_floats
from lightray.states import RunningStage

if TYPE_CHECKING:
    from lightray.trainer import Trainer


@dataclass
class EvalProgress:
    """``trainer.eval_progress``: batches per loader of the running evaluation pass, and how many are done."""

    limits: list[float] = field(default_factory=list)
    done: int = 0

    def start(self, limits: list[float]) -> None:
        self.limits, self.done = list(limits), 0


class ModuleMode:
    """The train/eval mode of every submodule, captured before an evaluation pass and restored after it, so a
    submodule the user keeps in eval mode (a frozen backbone) stays so (as in Lightning)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.modes = {name: sub.training for name, sub in module.named_modules()}

    def restore(self, module: torch.nn.Module) -> None:
        for name, sub in module.named_modules():
            if name in self.modes:
                sub.training = self.modes[name]


def evaluate(
    trainer: Trainer,
    stage: str,
    loaders: list[Iterable],
    limits: list[float],
    inside_fit: bool = False,
    steps_logged: list[int] | None = None,
) -> list[dict[str, float]]:
    """One pass over the validation or test loaders; returns the epoch metrics per loader.

    ``steps_logged`` counts, per loader, the step metrics sent to the loggers (their step number); it carries
    over between the validation passes of one fit."""
    module, hooks = trainer.lightning_module, trainer.hooks
    prefix = "validation" if stage == "validate" else "test"
    train_results, trainer.results = trainer.results, MetricStore(trainer.strategy)
    sanity_checking = trainer.sanity_checking
    outer_stage = trainer.state.stage
    if not sanity_checking:
        trainer.state.stage = RunningStage.VALIDATING if stage == "validate" else RunningStage.TESTING
    step_args = data.StepArgs(getattr(module, f"{prefix}_step"), pass_dataloader_idx=len(loaders) > 1)
    grad_context = torch.no_grad() if inside_fit or not trainer.inference_mode else torch.inference_mode()

    steps_logged = steps_logged if steps_logged is not None else [0] * len(loaders)
    trainer.eval_progress.start(limits)
    mode = ModuleMode(module)
    hooks.call_module(f"on_{prefix}_model_eval")
    hooks.call_hook(f"on_{prefix}_start")
    hooks.call_strategy(f"on_{prefix}_start")
    hooks.call_hook(f"on_{prefix}_epoch_start")
    next_action = f"[_EvaluationLoop].{'val' if stage == 'validate' else 'test'}_next"  # Lightning's name
    per_loader: list[dict[str, float]] = []
    with grad_context:
        for dl_idx, (loader, limit) in enumerate(zip(loaders, limits)):
            trainer.results.dataloader_idx = dl_idx if len(loaders) > 1 else None
            for batch_idx, batch in enumerate(data.take(loader, limit, lambda: hooks.profile(next_action))):
                batch = hooks.to_device(batch, dl_idx)
                trainer.results.batch = batch
                trainer.results.clear_step_values()
                hook_args: tuple = (batch, batch_idx, dl_idx) if len(loaders) > 1 else (batch, batch_idx)
                hooks.call_hook(f"on_{prefix}_batch_start", *hook_args)
                trainer.results.current_fx = f"{prefix}_step"
                with trainer.precision_plugin.forward_context():
                    output = hooks.call_strategy(f"{prefix}_step", *step_args(batch, batch_idx, dl_idx))
                trainer.eval_progress.done += 1
                hooks.call_callbacks(f"on_{prefix}_batch_end", output, *hook_args)
                hooks.call_module(f"on_{prefix}_batch_end", output, *hook_args)
                # step values reach the progress bar and the loggers, never callback_metrics (as in Lightning)
                stage_hooks.publish_metrics(trainer)
                logged = trainer.results.view()[1]
                if logged and not sanity_checking:
                    stage_hooks.send_to_loggers(trainer, logged, step=steps_logged[dl_idx], with_epoch=False)
                if not sanity_checking:
                    steps_logged[dl_idx] += 1
    trainer.results.dataloader_idx = None
    trainer.results.epoch_view = True
    hooks.call_hook(f"on_{prefix}_epoch_end")
    callback, logged, pbar = trainer.results.epoch_metrics()
    if not sanity_checking:
        trainer.callback_metrics.update(callback)
        trainer.progress_bar_metrics.update(pbar)
        if logged:  # at the loggers' training step, as Lightning logs them (also in validate/test after a fit)
            stage_hooks.send_to_loggers(trainer, logged, step=trainer.fit_loop.state.batches_that_stepped)
        numbers = to_floats(logged)
        per_loader = [_metrics_of_loader(numbers, i, len(loaders)) for i in range(len(loaders))]
    hooks.call_hook(f"on_{prefix}_end")
    hooks.call_strategy(f"on_{prefix}_end")
    trainer.results.reset()  # torchmetrics logged here start the next pass empty
    if is_overridden(module, f"on_{prefix}_model_train", LightningModule):
        hooks.call_module(f"on_{prefix}_model_train")
    else:
        mode.restore(module)
    trainer.results = train_results
    trainer.state.stage = outer_stage
    return per_loader


def run_evaluation(trainer: Trainer, stage: str) -> list[dict[str, float]]:
    """``Trainer.validate`` / ``Trainer.test``: set-up, one evaluation pass, teardown."""
    stage_hooks.setup(trainer, stage)
    checkpoint.restore_weights_for_evaluation(trainer)
    stage_hooks.reset_metrics(trainer)
    trainer.lightning_module.zero_grad()
    key, limit_name = ("val", "limit_val_batches") if stage == "validate" else ("test", "limit_test_batches")
    loaders = _loaders_for_this_process(trainer, key, stage)
    limits = [data.limit_batches(dl, getattr(trainer, limit_name), limit_name) for dl in loaders]
    results = evaluate(trainer, stage, loaders, limits) if loaders else []
    stage_hooks.teardown(trainer, stage)
    return results


def run_predict(trainer: Trainer) -> list[Any]:
    """``Trainer.predict``: set-up, one pass of ``predict_step`` over the predict loaders, teardown."""
    module, hooks = trainer.lightning_module, trainer.hooks
    stage_hooks.setup(trainer, "predict")
    checkpoint.restore_weights_for_evaluation(trainer)
    stage_hooks.reset_metrics(trainer)
    module.zero_grad()
    loaders = _loaders_for_this_process(trainer, "predict", "predict")
    limits = [data.limit_batches(dl, trainer.limit_predict_batches, "limit_predict_batches") for dl in loaders]
    step_args = data.StepArgs(module.predict_step, pass_dataloader_idx=len(loaders) > 1)
    predictions: list[list[Any]] = []
    trainer.eval_progress.start(limits)
    mode = ModuleMode(module)
    hooks.call_module("on_predict_model_eval")
    hooks.call_hook("on_predict_start")
    hooks.call_strategy("on_predict_start")
    hooks.call_hook("on_predict_epoch_start")
    context = torch.inference_mode() if trainer.inference_mode else torch.no_grad()
    next_action = "[_PredictionLoop].predict_next"
    with context:
        for dl_idx, (loader, limit) in enumerate(zip(loaders, limits)):
            outputs: list[Any] = []
            for batch_idx, batch in enumerate(data.take(loader, limit, lambda: hooks.profile(next_action))):
                batch = hooks.to_device(batch, dl_idx)
                hook_args: tuple = (batch, batch_idx, dl_idx) if len(loaders) > 1 else (batch, batch_idx)
                hooks.call_hook("on_predict_batch_start", *hook_args)
                trainer.results.current_fx = "predict_step"
                with trainer.precision_plugin.forward_context():
                    output = hooks.call_strategy("predict_step", *step_args(batch, batch_idx, dl_idx))
                trainer.eval_progress.done += 1
                hooks.call_callbacks("on_predict_batch_end", output, *hook_args)
                hooks.call_module("on_predict_batch_end", output, *hook_args)
                outputs.append(output)
            predictions.append(outputs)
    trainer.predict_outputs = predictions[0] if len(predictions) == 1 else predictions  # for prediction writers
    hooks.call_hook("on_predict_epoch_end")
    hooks.call_hook("on_predict_end")
    hooks.call_strategy("on_predict_end")
    mode.restore(module)
    stage_hooks.teardown(trainer, "predict")
    return predictions[0] if len(predictions) == 1 else predictions


def _loaders_for_this_process(trainer: Trainer, key: str, stage: str) -> list[Iterable]:
    loaders = data.as_loader_list(trainer.data_sources.load(key, trainer.hooks), stage)
    return [data.for_this_process(dl, trainer, shuffle=False) for dl in loaders]


def _metrics_of_loader(metrics: dict[str, float], idx: int, count: int) -> dict[str, float]:
    if count == 1:
        return dict(metrics)
    suffix = f"/dataloader_idx_{idx}"
    return {k: v for k, v in metrics.items() if k.endswith(suffix) or "/dataloader_idx_" not in k}


def print_results(stage: str, results: list[dict[str, float]]) -> None:
    """The table Lightning prints after ``validate``/``test``: one block per dataloader."""
    if not results or not any(results):
        return
    title = "Validate metric" if stage == "validate" else "Test metric"
    for idx, metrics in enumerate(results):
        width = max([len(title), *(len(k) for k in metrics)]) + 2
        print("─" * (width + 24))
        print(f"{title:<{width}}DataLoader {idx}")
        print("─" * (width + 24))
        for key, value in sorted(metrics.items()):
            print(f"{key:<{width}}{value:.6g}")
        print("─" * (width + 24))

"""The optimization of one training batch: automatic (closure, accumulation, clipping) or manual, the backward
pass with its hooks, the optimizer step, and scheduler stepping. Runs in the training process."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer

from lightray.errors import MisconfigurationError
from lightray.optimization.configure import LRSchedulerConfig

if TYPE_CHECKING:
    from lightray.loops.loop_state import LoopState
    from lightray.trainer import Trainer


@dataclass
class StepResult:
    """What one training_step produced, as Lightning's closure reports it."""

    closure_loss: torch.Tensor | None
    extra: dict[str, Any]

    def as_output(self) -> dict[str, Any]:
        if self.closure_loss is None:
            return {}
        return {"loss": self.closure_loss.detach(), **self.extra}


class Closure:
    """What ``optimizer_step`` receives as ``optimizer_closure`` (Lightning's interface): calling it runs
    ``training_step``, ``zero_grad`` at the start of an accumulation window, and backward; it returns the loss."""

    def __init__(self, step: Callable[[], StepResult]) -> None:
        self._step = step
        self._result: StepResult | None = None

    def closure(self) -> StepResult:
        self._result = self._step()
        return self._result

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor | None:
        loss = self.closure().closure_loss
        return loss.detach() if loss is not None else None

    def consume_result(self) -> StepResult:
        """The result of the closure's run (once); an error when ``optimizer_step`` never ran it."""
        result, self._result = self._result, None
        if result is None:
            raise MisconfigurationError(
                "The optimizer closure was not run: your `optimizer_step` override must call "
                "`optimizer.step(closure=optimizer_closure)` (or `optimizer_closure()`)."
            )
        return result


class Optimization:
    """Steps the trainer's optimizers for the fit loop, counting the fit loop's global step."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.stepping = False  # whether this batch ends an accumulation window (automatic optimization)
        self.warned_no_loss = False
        # no zero_grad and no backward while True (Lightning's fit_loop._skip_backward): what
        # StochasticWeightAveraging's BatchNorm epoch sets, stepping once on the gradients left from before it
        self.skip_backward = False

    @property
    def state(self) -> LoopState:
        return self.trainer.fit_loop.state

    def automatic_step(self, batch: Any, batch_idx: int, args: tuple) -> dict[str, Any]:
        """One training batch under automatic optimization, as Lightning orders it."""
        trainer, hooks = self.trainer, self.trainer.hooks
        accumulate = trainer.accumulate_grad_batches
        optimizer = trainer.optimizers[0]
        zero_grad = batch_idx % accumulate == 0

        def step() -> StepResult:
            trainer.results.current_fx = "training_step"
            with trainer.precision_plugin.forward_context():
                output = hooks.call_strategy("training_step", *args)
            result = automatic_result(output, accumulate)
            if result.closure_loss is None:
                self._warn_no_loss()
            if zero_grad and not self.skip_backward:
                hooks.call_callbacks("on_before_zero_grad", optimizer)
                hooks.call_module("on_before_zero_grad", optimizer)
                hooks.call_module("optimizer_zero_grad", self.state.epoch, batch_idx, optimizer)
            if result.closure_loss is not None and not self.skip_backward:
                with hooks.strategy_action("backward"):  # (manual_backward is no strategy action in Lightning)
                    self.backward(result.closure_loss, optimizer)
            return result

        closure = Closure(step)
        if self.stepping:
            hooks.call_module("optimizer_step", self.state.epoch, batch_idx, trainer.lightning_optimizers[0], closure)
        else:
            with trainer.strategy.block_gradient_sync():
                closure()
        return closure.consume_result().as_output()

    def _warn_no_loss(self) -> None:
        if self.trainer.world_size > 1:
            raise MisconfigurationError(
                "`training_step` returned None on a DDP worker: skipping a batch by returning None is not possible "
                "in distributed training (the other ranks wait for its gradients). Return a loss, e.g. multiplied "
                "by 0, to skip its effect."
            )
        if not self.warned_no_loss:
            self.warned_no_loss = True
            warnings.warn(
                "`training_step` returned `None`. If this was on purpose, ignore this warning: the batch is "
                "skipped (no backward, no optimizer step).",
                UserWarning,
                stacklevel=2,
            )

    def manual_step(self, args: tuple) -> dict[str, Any]:
        trainer = self.trainer
        trainer.results.current_fx = "training_step"
        with trainer.precision_plugin.forward_context():
            output = trainer.hooks.call_strategy("training_step", *args)
        if output is None:
            return {}
        if isinstance(output, torch.Tensor):
            return {"loss": output.detach()}
        if isinstance(output, dict):
            return {k: v.detach() if k == "loss" and isinstance(v, torch.Tensor) else v for k, v in output.items()}
        raise MisconfigurationError(
            f"In manual optimization `training_step` must return a tensor, a dict or None, got {type(output).__name__}."
        )

    def backward(self, loss: torch.Tensor, optimizer: Optimizer | None, *args: Any, **kwargs: Any) -> None:
        """The backward pass with its hooks (also behind ``manual_backward``)."""
        hooks = self.trainer.hooks
        loss = self.trainer.precision_plugin.scale_loss(loss)
        hooks.call_callbacks("on_before_backward", loss)
        hooks.call_module("on_before_backward", loss)
        self.trainer.results.current_fx = "backward"  # called, not timed, by Lightning's precision plugins
        self.trainer.lightning_module.backward(loss, *args, **kwargs)
        self.trainer.strategy.after_backward()
        hooks.call_callbacks("on_after_backward")
        hooks.call_module("on_after_backward")

    def optimizer_step(self, optimizer: Optimizer, closure: Callable[[], Any] | None, **kwargs: Any) -> Any:
        """Behind ``LightningOptimizer.step``: run the closure, the pre-step hooks and clipping, then step."""
        trainer, hooks = self.trainer, self.trainer.hooks

        def after_closure() -> None:
            hooks.call_callbacks("on_before_optimizer_step", optimizer)
            hooks.call_module("on_before_optimizer_step", optimizer)
            if trainer.lightning_module.automatic_optimization:
                hooks.call_module(
                    "configure_gradient_clipping",
                    optimizer,
                    gradient_clip_val=trainer.gradient_clip_val,
                    gradient_clip_algorithm=trainer.gradient_clip_algorithm,
                )

        # a manual step is a profiler action of its own (an automatic one is timed as the module's optimizer_step)
        manual = not trainer.lightning_module.automatic_optimization
        with hooks.profile("optimizer_step") if manual else contextlib.nullcontext():
            output = trainer.precision_plugin.optimizer_step(optimizer, closure or _no_closure, after_closure, **kwargs)
        self.state.global_step += 1
        return output

    def update_schedulers(self, interval: str, plateau: bool, accumulating: bool) -> None:
        trainer = self.trainer
        if accumulating or not trainer.lr_scheduler_configs or not trainer.lightning_module.automatic_optimization:
            return
        for config in trainer.lr_scheduler_configs:
            if config.reduce_on_plateau != plateau or config.interval != interval:
                continue
            index = (self.state.batch_idx - 1 if interval == "step" else self.state.epoch) + 1
            if index % config.frequency == 0:
                self.step_scheduler(config)

    def step_scheduler(self, config: LRSchedulerConfig) -> None:
        metric = None
        if config.reduce_on_plateau:
            assert config.monitor is not None
            metric = self.trainer.callback_metrics.get(config.monitor)
            if metric is None:
                if config.strict:
                    raise MisconfigurationError(
                        f"ReduceLROnPlateau monitors {config.monitor!r}, which was never logged. Logged metrics: "
                        f"{sorted(self.trainer.callback_metrics)}. Log it with `self.log({config.monitor!r}, ...)` "
                        "or set 'monitor' in the lr_scheduler dict to one of these."
                    )
                return
        self.trainer.hooks.call_module("lr_scheduler_step", config.scheduler, metric)


def automatic_result(output: Any, accumulate: int) -> StepResult:
    """The loss and extras of ``training_step``'s output under automatic optimization."""
    if isinstance(output, dict):
        if "loss" not in output or output["loss"] is None:
            raise MisconfigurationError(
                "`training_step` returned a dict without a 'loss' key; with automatic optimization "
                f"return {{'loss': loss, ...}} (got keys {sorted(output)})."
            )
        loss, extra = output["loss"], {k: v for k, v in output.items() if k != "loss"}
    elif isinstance(output, torch.Tensor):
        loss, extra = output, {}
    elif output is None:
        return StepResult(None, {})
    else:
        raise MisconfigurationError(
            f"`training_step` returned a {type(output).__name__}; with automatic optimization return the "
            "loss tensor, a dict with a 'loss' key, or None to skip the batch."
        )
    if not isinstance(loss, torch.Tensor):
        raise MisconfigurationError(f"`training_step`'s loss must be a tensor, got {type(loss).__name__}.")
    if not loss.requires_grad and torch.is_grad_enabled():
        raise MisconfigurationError(
            "`training_step` returned a loss with no gradient to follow (it does not require grad): it was computed "
            "under `torch.no_grad()`, detached (`.detach()`, `.item()`), or only from frozen parameters. Return the "
            "loss as computed from the model's trainable parameters."
        )
    return StepResult(loss / accumulate if accumulate > 1 else loss, extra)


def _no_closure() -> None:
    return None

"""The one training loop: fit, validate, test and predict as plain for-loops with hooks called by name.

It runs in-process for local runs and, unchanged, inside each Ray Train worker. Everything that
differs between the two (devices, process groups, samplers, DDP) is asked of ``trainer.strategy``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer

from lightray import data, evaluation
from lightray.errors import MisconfigurationError
from lightray.metrics import MetricStore, to_floats
from lightray.optimization import LightningOptimizer, LRSchedulerConfig, parse_optimizers
from lightray.seed import restore_rng_states

if TYPE_CHECKING:
    from lightray.callbacks.callback import Callback
    from lightray.trainer import Trainer


@dataclass
class LoopState:
    """Where training is; saved in checkpoints so a run resumes at the next batch."""

    epoch: int = 0  # epochs completed (== the current epoch's index while it runs)
    batch_idx: int = 0  # batches completed in the current epoch
    global_step: int = 0  # optimizer steps taken
    batches_that_stepped: int = 0  # training batches that ended with an optimizer step (the loggers' step)
    total_batch_idx: int = 0  # training batches seen over all epochs
    # where in the batch/epoch the loop is, so a checkpoint taken inside a hook resumes right after it:
    # before_batch, after_batch (in on_train_batch_end), after_validation, epoch_end, fit_end
    phase: str = "before_batch"


@dataclass
class ResumePoint:
    """A checkpoint's position inside an epoch, and the RNG states to continue with."""

    phase: str
    epoch_start_rng: dict[str, Any]
    rng_states: dict[str, Any] | None

    def restore_rng(self) -> None:
        if self.rng_states is not None:
            restore_rng_states(self.rng_states)


@dataclass
class _StepResult:
    """What one training_step produced, as Lightning's closure reports it."""

    closure_loss: torch.Tensor | None
    extra: dict[str, Any]

    def as_output(self) -> dict[str, Any]:
        if self.closure_loss is None:
            return {}
        return {"loss": self.closure_loss.detach(), **self.extra}


class Loop:
    """Runs the stages of one Trainer. Built by the Trainer; reads its settings, writes its state."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.state = LoopState()
        self.metrics: MetricStore = MetricStore(trainer.strategy)
        self.train_loader: Iterable | None = None
        self.num_training_batches: float = math.inf
        self.val_loaders: list[Iterable] = []
        self.num_val_batches: list[float] = []
        self.val_check_batch: float = math.inf
        self.sanity_checking = False
        self.stage: str | None = None  # "fit", "validate", "test", "predict"
        self._callbacks_by_hook: dict[str, list[Callback]] = {}
        self._skipped_module_hooks: set[str] = set()
        self._data_hook_owner: dict[str, Any] = {}
        self.eval_limits: list[float] = []  # batches per loader of the running evaluation (for progress)
        self.eval_batches_done = 0
        self._closure_result: _StepResult | None = None
        self._resume: ResumePoint | None = None
        self._epoch_start_rng: dict[str, Any] = {}
        self.stepping = False

    # ================================================================== hook dispatch
    def index_hooks(self) -> None:
        """Remember who overrides each hook, so a step pays only for the hooks that do something."""
        from lightray.callbacks.callback import Callback
        from lightray.hooks import NOOP_HOOKS, DataHooks

        module, datamodule = self.trainer.lightning_module, self.trainer.datamodule
        self._skipped_module_hooks = {name for name in NOOP_HOOKS if getattr(type(module), name) is NOOP_HOOKS[name]}
        self._data_hook_owner = {}
        for name in ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"):
            base = getattr(DataHooks, name)
            if datamodule is not None and getattr(type(datamodule), name) is not base:
                self._data_hook_owner[name] = datamodule
            elif getattr(type(module), name) is not base:
                self._data_hook_owner[name] = module
            elif name == "transfer_batch_to_device" and self.trainer.strategy.root_device.type != "cpu":
                self._data_hook_owner[name] = module  # loaders yield CPU tensors: only other devices need a move
        self._callbacks_by_hook = {}
        for name in vars(Callback):
            if name.startswith("on_") or name in ("setup", "teardown"):
                self._callbacks_by_hook[name] = [
                    cb for cb in self.trainer.callbacks if getattr(type(cb), name) is not getattr(Callback, name)
                ]

    def call_callbacks(self, name: str, *args: Any, monitoring: bool | None = None) -> None:
        callbacks = self._callbacks_by_hook.get(name)
        if not callbacks:
            return
        trainer, module = self.trainer, self.trainer.lightning_module
        self.metrics.current_fx = name
        for callback in callbacks:
            if monitoring is None or getattr(callback, "_monitors_epoch_end", False) == monitoring:
                getattr(callback, name)(trainer, module, *args)

    def call_module(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self._skipped_module_hooks:
            return None
        self.metrics.current_fx = name
        return getattr(self.trainer.lightning_module, name)(*args, **kwargs)

    def call_hook(self, name: str, *args: Any) -> None:
        """Callbacks first, then the module: Lightning's order for the loop hooks."""
        self.call_callbacks(name, *args)
        self.call_module(name, *args)

    def call_data_hook(self, name: str, batch: Any, *args: Any) -> Any:
        """Batch-transfer hooks: the datamodule's when it overrides them, else the module's."""
        owner = self._data_hook_owner.get(name)
        if owner is None:
            return batch  # the default hook returns the batch unchanged
        self.metrics.current_fx = name
        return getattr(owner, name)(batch, *args)

    def to_device(self, batch: Any, dataloader_idx: int) -> Any:
        batch = self.call_data_hook("on_before_batch_transfer", batch, dataloader_idx)
        batch = self.call_data_hook(
            "transfer_batch_to_device", batch, self.trainer.strategy.root_device, dataloader_idx
        )
        return self.call_data_hook("on_after_batch_transfer", batch, dataloader_idx)

    # ================================================================== set-up shared by all stages
    def setup(self, stage: str) -> None:
        """prepare_data, setup and configure_model, in Lightning's order."""
        trainer, module, datamodule = self.trainer, self.trainer.lightning_module, self.trainer.datamodule
        self.stage = stage
        trainer.strategy.connect(module)
        if trainer.local_rank == 0:
            if datamodule is not None:
                datamodule.prepare_data()
            self.call_module("prepare_data")
        trainer.strategy.barrier("prepare_data")
        if datamodule is not None:
            datamodule.setup(stage)
        self.call_callbacks("setup", stage)
        self.call_module("setup", stage)
        self.call_module("configure_model")
        trainer.strategy.connect(module)  # configure_model may have created parameters
        self.log_hyperparams()

    def log_hyperparams(self) -> None:
        trainer, module, datamodule = self.trainer, self.trainer.lightning_module, self.trainer.datamodule
        params = dict(module.hparams_initial) if module._log_hyperparams else {}
        if datamodule is not None:
            params.update(datamodule.hparams)
        for logger in trainer.loggers:
            if params:
                logger.log_hyperparams(params)
            logger.save()

    def teardown(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is not None:
            datamodule.teardown(stage)
        self.call_callbacks("teardown", stage)
        self.call_module("teardown", stage)
        self.trainer.strategy.teardown()

    def configure_optimizers(self) -> None:
        trainer, module = self.trainer, self.trainer.lightning_module
        output = self.call_module("configure_optimizers")
        optimizers, schedulers, _ = parse_optimizers(output)
        if not optimizers:
            optimizers = [_NoOptimizer()]
        if module.automatic_optimization and len(optimizers) > 1:
            raise MisconfigurationError(
                "Several optimizers need manual optimization: set `self.automatic_optimization = False` in "
                "`__init__` and step them yourself in `training_step`."
            )
        trainer.optimizers = optimizers
        trainer.lr_scheduler_configs = schedulers
        trainer._lightning_optimizers = [LightningOptimizer(opt, self) for opt in optimizers]

    # ================================================================== fit
    def fit(self) -> None:
        from lightray import checkpoint as ckpt

        trainer, module = self.trainer, self.trainer.lightning_module
        self.setup("fit")
        loaded = trainer._load_checkpoint_for_fit()
        if loaded is not None:
            ckpt.restore_modules_and_callbacks(trainer, *loaded)
        self.configure_optimizers()
        trainer.strategy.wrap_model()
        self.call_hook("on_fit_start")
        if loaded is not None:
            ckpt.restore_training_state(trainer, *loaded)

        if loaded is None and self.validation_wanted() and trainer.num_sanity_val_steps != 0:
            self.sanity_check()  # skipped on resume: it would draw random numbers the checkpoint restored
        self.load_train_data()
        self.load_val_data()

        if self.num_training_batches > 0 and not self._max_steps_reached():
            module.train()
            self.call_hook("on_train_start")
            while not self._fit_done():
                self.train_epoch()
            self.call_hook("on_train_end")
        self.state.phase = "fit_end"
        self.call_hook("on_fit_end")
        self.teardown("fit")

    def _max_steps_reached(self) -> bool:
        max_steps = self.trainer.max_steps
        return max_steps != -1 and self.state.global_step >= max_steps

    def _can_stop_early(self) -> bool:
        trainer = self.trainer
        met_epochs = self.state.epoch >= (trainer.min_epochs or 0)
        met_steps = self.state.global_step >= (trainer.min_steps or 0)
        return met_epochs and met_steps

    def _fit_done(self) -> bool:
        if self._resume is not None:
            return False  # the interrupted epoch still has its end to run
        max_epochs = self.trainer.max_epochs
        if self._max_steps_reached():
            return True
        if max_epochs is not None and max_epochs != -1 and self.state.epoch >= max_epochs:
            return True
        return self.trainer.should_stop and self._can_stop_early()

    def load_train_data(self) -> None:
        """Call ``train_dataloader`` (once per fit) and work out the batch counts."""
        if self.train_loader is not None:
            return
        trainer = self.trainer
        loader = trainer._dataloader_source("train")
        if isinstance(loader, list | tuple | dict):
            raise MisconfigurationError(
                "Several training dataloaders at once are not supported yet; combine them into one "
                "DataLoader (e.g. a ConcatDataset) or iterate them yourself in one IterableDataset."
            )
        self.train_loader = data.make_resumable(data.for_this_process(loader, trainer))
        self.num_training_batches = data.limit_batches(
            self.train_loader, trainer.limit_train_batches, "limit_train_batches"
        )
        interval = trainer.val_check_interval
        if isinstance(interval, float):
            if math.isinf(self.num_training_batches):
                self.val_check_batch = math.inf
            else:
                self.val_check_batch = max(1, int(self.num_training_batches * interval))
        else:
            if interval > self.num_training_batches and trainer.check_val_every_n_epoch is not None:
                raise MisconfigurationError(
                    f"`val_check_interval={interval}` is more than the {int(self.num_training_batches)} "
                    "training batches of an epoch; lower it, or set `check_val_every_n_epoch=None` to "
                    "validate across epochs."
                )
            self.val_check_batch = interval

    def validation_wanted(self) -> bool:
        trainer = self.trainer
        return (
            trainer.limit_val_batches != 0
            and trainer._has_step("validation_step")
            and trainer._has_dataloader_source("val")
        )

    def load_val_data(self) -> None:
        if self.val_loaders or not self.validation_wanted():
            return
        trainer = self.trainer
        loaders = data.as_loader_list(trainer._dataloader_source("val"), "validation")
        self.val_loaders = [data.for_this_process(dl, trainer, shuffle=False) for dl in loaders]
        self.num_val_batches = [
            data.limit_batches(dl, trainer.limit_val_batches, "limit_val_batches") for dl in self.val_loaders
        ]

    @property
    def enable_validation(self) -> bool:
        return bool(self.val_loaders) and sum(self.num_val_batches) > 0

    def sanity_check(self) -> None:
        trainer = self.trainer
        steps = trainer.num_sanity_val_steps
        self.sanity_checking = True
        self.call_callbacks("on_sanity_check_start")
        self.load_val_data()
        limits = [n if steps == -1 else min(n, steps) for n in self.num_val_batches]
        self.evaluate("validate", self.val_loaders, limits, inside_fit=True)
        self.call_callbacks("on_sanity_check_end")
        self.sanity_checking = False
        # what the sanity check logged must not look like a real validation result
        trainer.callback_metrics.clear()
        trainer.logged_metrics.clear()
        trainer.progress_bar_metrics.clear()

    def train_epoch(self) -> None:
        """One training epoch; after a resume, the rest of the interrupted one."""
        resume = self._resume
        self._resume = None
        if resume is None or resume.phase != "epoch_end":
            self._train_batches(resume)
        self._end_epoch(resume)

    def _train_batches(self, resume: ResumePoint | None) -> None:
        state = self.state
        loader = self.train_loader
        assert loader is not None
        if resume is not None and resume.phase == "before_batch" and state.batch_idx == 0:
            resume.restore_rng()  # the checkpoint was taken between epochs: start this one afresh
            resume = None
        data.set_epoch(loader, state.epoch)
        if resume is None:
            state.batch_idx = 0
            state.phase = "before_batch"
            self.metrics.reset()
            self.call_hook("on_train_epoch_start")
        iterator = self._epoch_iterator(loader, resume)
        try:
            self._run_batches(iterator, resume)
        finally:
            data.close_iterator(iterator)

    def _run_batches(self, iterator: Iterator, resume: ResumePoint | None) -> None:
        trainer, module, state = self.trainer, self.trainer.lightning_module, self.state

        automatic = module.automatic_optimization
        step_args = data.StepArgs(module.training_step, pass_dataloader_idx=False)
        num_batches = self.num_training_batches
        if resume is not None and resume.phase in ("after_batch", "after_validation"):
            # the checkpoint was taken inside this batch's end: finish it as the interrupted run would have
            done = state.batch_idx - 1
            if self._finish_batch(done, done + 1 >= num_batches, validated=resume.phase == "after_validation"):
                return
        while state.batch_idx < num_batches:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            batch_idx = state.batch_idx
            is_last = batch_idx + 1 >= num_batches
            state.phase = "before_batch"
            batch = self.to_device(batch, 0)
            self.metrics.batch = batch
            self.metrics.clear_step_values()

            self.call_callbacks("on_train_batch_start", batch, batch_idx)
            if self.call_module("on_train_batch_start", batch, batch_idx) == -1:
                self._update_schedulers("step", plateau=False, accumulating=False)
                break
            self.stepping = automatic and ((batch_idx + 1) % trainer.accumulate_grad_batches == 0 or is_last)
            if automatic:
                output = self.automatic_step(batch, batch_idx, step_args(batch, batch_idx))
            else:
                output = self.manual_step(step_args(batch, batch_idx))
            state.batch_idx += 1
            state.total_batch_idx += 1
            accumulating = automatic and not self.stepping
            self._update_schedulers("step", plateau=False, accumulating=accumulating)
            if is_last:
                self._update_schedulers("epoch", plateau=False, accumulating=False)

            state.phase = "after_batch"
            self.call_callbacks("on_train_batch_end", output, batch, batch_idx)
            self.call_module("on_train_batch_end", output, batch, batch_idx)
            if self._finish_batch(batch_idx, is_last, validated=False):
                break

    def _finish_batch(self, batch_idx: int, is_last: bool, validated: bool) -> bool:
        """What follows ``on_train_batch_end``: logging, validation, plateau schedulers. True: stop the epoch."""
        trainer, state = self.trainer, self.state
        accumulating = self.trainer.lightning_module.automatic_optimization and not (
            (batch_idx + 1) % trainer.accumulate_grad_batches == 0 or is_last
        )
        self.log_train_step()
        if not validated and self._should_validate(batch_idx, is_last):
            if not accumulating:
                self.call_module("on_validation_model_zero_grad")
            state.phase = "after_validation"
            self.evaluate("validate", self.val_loaders, self.num_val_batches, inside_fit=True)
        self._update_schedulers("step", plateau=True, accumulating=accumulating)
        if not accumulating:
            state.batches_that_stepped += 1
        state.phase = "before_batch"
        return self._max_steps_reached() or (trainer.should_stop and self._can_stop_early())

    def _epoch_iterator(self, loader: Iterable, resume: ResumePoint | None) -> Iterator:
        """``iter(loader)``; on resume, the interrupted epoch's order from its next batch on."""
        generators = data.generators(loader)
        if resume is None:
            self._epoch_start_rng = {"torch": torch.get_rng_state(), "generators": [g.get_state() for g in generators]}
            return iter(loader)
        # Draw the interrupted epoch's order again from the RNG state it started with ...
        torch.set_rng_state(resume.epoch_start_rng["torch"])
        for generator, rng in zip(generators, resume.epoch_start_rng["generators"]):
            generator.set_state(rng)
        self._epoch_start_rng = resume.epoch_start_rng
        skip = self.state.batch_idx
        sampler = getattr(loader, "batch_sampler", None)
        if isinstance(sampler, data.ResumableBatchSampler):
            sampler.skip_next(skip)  # skip consumed batches without loading them
            iterator = iter(loader)
            sampler.advance()
        else:
            iterator = iter(loader)
            for _ in range(skip):  # a loader we cannot rebuild: read and drop what the interrupted run consumed
                next(iterator, None)
        # ... then continue with the RNG state of the moment the checkpoint was taken
        resume.restore_rng()
        return iterator

    def _end_epoch(self, resume: ResumePoint | None) -> None:
        trainer, state = self.trainer, self.state
        last_batch_reached = state.batch_idx >= self.num_training_batches
        if resume is None or resume.phase != "epoch_end":
            state.phase = "epoch_end"
            self.metrics.current_fx = None
            self.call_callbacks("on_train_epoch_end", monitoring=False)
            self.call_module("on_train_epoch_end")
            self.call_callbacks("on_train_epoch_end", monitoring=True)
        else:
            resume.restore_rng()
        callback, logged, pbar = self.metrics.epoch_metrics()
        trainer.callback_metrics.update(callback)
        trainer.progress_bar_metrics.update(pbar)
        if last_batch_reached:
            self._update_schedulers("epoch", plateau=True, accumulating=False)
        if logged:
            self.log_to_loggers(logged, step=state.batches_that_stepped - 1)
        state.epoch += 1
        state.batch_idx = 0
        state.phase = "before_batch"

    def _should_validate(self, batch_idx: int, is_last: bool) -> bool:
        trainer = self.trainer
        if not self.enable_validation:
            return False
        every = trainer.check_val_every_n_epoch
        if every is not None and (self.state.epoch + 1) % every != 0:
            return False
        if trainer.should_stop and self._can_stop_early():
            return True
        if math.isinf(self.val_check_batch):
            return is_last
        current = self.state.total_batch_idx - 1 if every is None else batch_idx
        return (current + 1) % self.val_check_batch == 0

    # ================================================================== loop state for checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.state),
            "epoch_start_rng": self._epoch_start_rng,
            "world_size": self.trainer.world_size,
            "accumulate_grad_batches": self.trainer.accumulate_grad_batches,
        }

    def load_state_dict(self, state: dict[str, Any], rng_states: dict[str, Any] | None) -> None:
        """Continue where the checkpoint was taken: at its next batch, or after its epoch."""
        fields = {name: state[name] for name in asdict(self.state)}
        self.state = LoopState(**fields)
        saved_world = state.get("world_size", self.trainer.world_size)
        if saved_world != self.trainer.world_size:
            self._adapt_to_world_size(saved_world, state.get("accumulate_grad_batches", 1))
        if self.state.phase == "fit_end":
            if rng_states is not None:
                restore_rng_states(rng_states)
            return
        self._resume = ResumePoint(self.state.phase, state["epoch_start_rng"], rng_states)

    def _adapt_to_world_size(self, saved_world: int, saved_accumulate: int) -> None:
        """Resuming on another number of workers (elastic training): keep the global batch size.

        Accumulation is scaled so that workers x accumulation stays the same when it divides; the
        interrupted epoch continues after the same samples, since DistributedSampler deals one global
        order out to the ranks.
        """
        trainer, world = self.trainer, self.trainer.world_size
        total = saved_world * saved_accumulate
        if total % world == 0:
            trainer.accumulate_grad_batches = total // world
            message = (
                f"accumulate_grad_batches {saved_accumulate} -> {trainer.accumulate_grad_batches} keeps the "
                "global batch size"
            )
        else:
            message = (
                f"the global batch size changes by {world * trainer.accumulate_grad_batches}/{total}: "
                f"{total} is not a multiple of {world} workers"
            )
        consumed = self.state.batch_idx * saved_world
        self.state.batch_idx = consumed // world
        if trainer.is_global_zero:
            warnings.warn(f"Resuming on {world} workers instead of {saved_world}: {message}.", stacklevel=2)

    # ================================================================== optimization
    def automatic_step(self, batch: Any, batch_idx: int, args: tuple) -> dict[str, Any]:
        """One training batch under automatic optimization, as Lightning orders it."""
        trainer = self.trainer
        accumulate = trainer.accumulate_grad_batches
        optimizer = trainer.optimizers[0]
        zero_grad = batch_idx % accumulate == 0

        def closure() -> torch.Tensor | None:
            self.metrics.current_fx = "training_step"
            with trainer.precision_plugin.forward_context():
                output = trainer.strategy.training_step(*args)
            result = self._automatic_result(output, accumulate)
            if zero_grad:
                self.call_callbacks("on_before_zero_grad", optimizer)
                self.call_module("on_before_zero_grad", optimizer)
                self.call_module("optimizer_zero_grad", self.state.epoch, batch_idx, optimizer)
            if result.closure_loss is not None:
                self.backward(result.closure_loss, optimizer)
            self._closure_result = result
            return result.closure_loss.detach() if result.closure_loss is not None else None

        self._closure_result = None
        if self.stepping:
            self.call_module("optimizer_step", self.state.epoch, batch_idx, trainer._lightning_optimizers[0], closure)
        else:
            with trainer.strategy.block_gradient_sync():
                closure()
        result = self._closure_result
        if result is None:
            raise MisconfigurationError(
                "The optimizer closure was not run: your `optimizer_step` override must call "
                "`optimizer.step(closure=optimizer_closure)` (or `optimizer_closure()`)."
            )
        self._closure_result = None
        return result.as_output()

    @staticmethod
    def _automatic_result(output: Any, accumulate: int) -> _StepResult:
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
            return _StepResult(None, {})
        else:
            raise MisconfigurationError(
                f"`training_step` returned a {type(output).__name__}; with automatic optimization return the "
                "loss tensor, a dict with a 'loss' key, or None to skip the batch."
            )
        if not isinstance(loss, torch.Tensor):
            raise MisconfigurationError(f"`training_step`'s loss must be a tensor, got {type(loss).__name__}.")
        return _StepResult(loss / accumulate if accumulate > 1 else loss, extra)

    def manual_step(self, args: tuple) -> dict[str, Any]:
        trainer = self.trainer
        self.metrics.current_fx = "training_step"
        with trainer.precision_plugin.forward_context():
            output = trainer.strategy.training_step(*args)
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
        loss = self.trainer.precision_plugin.scale_loss(loss)
        self.call_callbacks("on_before_backward", loss)
        self.call_module("on_before_backward", loss)
        self.call_module("backward", loss, *args, **kwargs)
        self.call_callbacks("on_after_backward")
        self.call_module("on_after_backward")

    def optimizer_step(self, optimizer: Optimizer, closure: Callable[[], Any] | None, **kwargs: Any) -> Any:
        """Behind ``LightningOptimizer.step``: run the closure, the pre-step hooks and clipping, then step."""
        trainer, module = self.trainer, self.trainer.lightning_module

        def after_closure() -> None:
            self.call_callbacks("on_before_optimizer_step", optimizer)
            self.call_module("on_before_optimizer_step", optimizer)
            if module.automatic_optimization:
                self.call_module(
                    "configure_gradient_clipping",
                    optimizer,
                    trainer.gradient_clip_val,
                    trainer.gradient_clip_algorithm,
                )

        output = trainer.precision_plugin.optimizer_step(optimizer, closure or _no_closure, after_closure, **kwargs)
        self.state.global_step += 1
        return output

    def _update_schedulers(self, interval: str, plateau: bool, accumulating: bool) -> None:
        trainer, module = self.trainer, self.trainer.lightning_module
        if accumulating or not trainer.lr_scheduler_configs or not module.automatic_optimization:
            return
        for config in trainer.lr_scheduler_configs:
            if config.reduce_on_plateau != plateau or config.interval != interval:
                continue
            index = (self.state.batch_idx - 1 if interval == "step" else self.state.epoch) + 1
            if index % config.frequency != 0:
                continue
            self._step_scheduler(config)

    def _step_scheduler(self, config: LRSchedulerConfig) -> None:
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
        self.call_module("lr_scheduler_step", config.scheduler, metric)

    # ================================================================== metrics to loggers
    def log_train_step(self) -> None:
        trainer = self.trainer
        callback, logged, pbar = self.metrics.step_metrics()
        if callback:
            trainer.callback_metrics.update(callback)
            trainer.progress_bar_metrics.update(pbar)
        log_now = (self.state.batches_that_stepped + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop
        if logged and log_now:
            self.log_to_loggers(logged, step=self.state.batches_that_stepped)

    def log_to_loggers(self, metrics: dict[str, Any], step: int) -> None:
        trainer = self.trainer
        numbers = to_floats(metrics)
        trainer.logged_metrics.update(metrics)
        if not trainer.loggers:
            return
        numbers.setdefault("epoch", float(self.state.epoch))
        for logger in trainer.loggers:
            logger.log_metrics(numbers, step=step)

    # ================================================================== validate / test / predict
    # the evaluation passes live in evaluation.py; they are methods of the loop all the same
    evaluate = evaluation.evaluate
    run_evaluation = evaluation.run_evaluation
    run_predict = evaluation.run_predict


def _no_closure() -> None:
    return None


class _NoOptimizer(Optimizer):
    """Stands in when ``configure_optimizers`` returns None: steps do nothing."""

    def __init__(self) -> None:
        super().__init__([torch.zeros(1)], {})

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        return closure() if closure is not None else None

"""The fit loop: epochs and batches as plain for-loops, validation inside them, and the state that makes a
resumed run continue at the next batch.

It runs in-process for local runs and, unchanged, inside each Ray Train worker. Everything that differs
between the two (devices, process groups, samplers, DDP) is asked of ``trainer.strategy``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from lightray import checkpoint, data
from lightray.errors import MisconfigurationError, PossibleUserWarning, TunerExit
from lightray.loops import evaluation_loop, stage
from lightray.loops.loop_state import (
    LoopState,
    ResumePoint,
    epoch_iterator,
    from_lightning_fit_loop,
    rng_of,
    scaled_accumulation,
)
from lightray.optimization.configure import configure_optimizers
from lightray.optimization.step import Optimization
from lightray.seed import collect_rng_states, restore_rng_states
from lightray.states import LoopPhase, RunningStage
from lightray.utilities.combined_loader import Batches, combined_for_training
from lightray.utilities.rank_zero import rank_zero_debug, rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from lightray.trainer import Trainer


class FitLoop:
    """``trainer.fit_loop``: runs ``Trainer.fit`` and holds its position (``state``); built by the Trainer."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.state = LoopState()
        self.optimization = Optimization(trainer)
        self.ended_by_tuner = False  # the last fit only carried a Tuner's search
        self.reset()
        planned = trainer.strategy.planned_world_size
        if planned != trainer.world_size:  # an elastic run started with fewer workers than it was planned for
            self.keep_global_batch(planned, trainer.accumulate_grad_batches)

    def reset(self) -> None:
        """Forget the data and resume point of a previous stage; the position (``state``) stays."""
        self.train_loader: Iterable | None = None
        self.num_training_batches: float = math.inf
        self.val_loaders: list[Iterable] = []
        self.num_val_batches: list[float] = []
        self.val_check_batch: float = math.inf
        self.val_steps_logged: list[int] = []
        self.train_loaded_epoch = self.val_loaded_epoch = 0  # when the loaders were last loaded
        self.resume: ResumePoint | None = None
        self.early_iterator: Iterator | None = None
        self.epoch_start_rng: dict[str, Any] = {}

    # ================================================================== fit
    def run(self) -> None:
        trainer, module, hooks = self.trainer, self.trainer.lightning_module, self.trainer.hooks
        self.ended_by_tuner = False
        stage.setup(trainer, "fit")
        loaded = checkpoint.load_for_fit(trainer)
        if loaded is not None:
            checkpoint.restore_modules_and_callbacks(trainer, loaded)
        stage.reset_metrics(trainer)
        configure_optimizers(trainer)
        trainer.strategy.wrap_model()
        try:
            hooks.call_hook("on_fit_start")
        except TunerExit:  # a Tuner's search ran in on_fit_start; that was all this fit was for
            self.ended_by_tuner = True
            stage.teardown(trainer, "fit")
            return
        if loaded is not None:
            checkpoint.restore_training_state(trainer, self, loaded)
        module.zero_grad()

        mid_epoch = self.resume is not None and self.resume.phase != LoopPhase.EPOCH_END and self.state.batch_idx > 0
        if not mid_epoch and self.validation_wanted() and trainer.num_sanity_val_steps != 0:
            self.sanity_check()
        self.setup_data()
        self.load_val_data()

        if self.num_training_batches > 0 and not self.max_steps_reached():
            _warn_eval_mode_modules(module)
            self.train()
        elif self.num_training_batches == 0:
            rank_zero_info("`Trainer.fit` stopped: No training batches.")
        self.state.phase = LoopPhase.FIT_END
        hooks.call_hook("on_fit_end")
        stage.teardown(trainer, "fit")

    def train(self) -> None:
        """Training epochs until ``done()``, between ``on_train_start`` and ``on_train_end``: the part of fit that
        the tuner's trials (``lightray.tuner``) run too, with their own limits."""
        self.setup_data()
        self.load_val_data()
        hooks = self.trainer.hooks
        hooks.call_hook("on_train_start")
        hooks.call_strategy("on_train_start")
        while not self.done():
            self.train_epoch()
        hooks.call_hook("on_train_end")
        hooks.call_strategy("on_train_end")

    def max_steps_reached(self) -> bool:
        max_steps = self.trainer.max_steps
        return max_steps != -1 and self.state.global_step >= max_steps

    def can_stop_early(self) -> bool:
        trainer = self.trainer
        return self.state.epoch >= (trainer.min_epochs or 0) and self.state.global_step >= (trainer.min_steps or 0)

    def done(self) -> bool:
        """Whether fit ends before the next epoch; says why, as Lightning does."""
        if self.resume is not None:
            return False  # the interrupted epoch still has its end to run
        max_epochs = self.trainer.max_epochs
        if self.max_steps_reached():
            rank_zero_info(f"`Trainer.fit` stopped: `max_steps={self.trainer.max_steps!r}` reached.")
            return True
        if max_epochs is not None and max_epochs != -1 and self.state.epoch >= max_epochs:
            rank_zero_info(f"`Trainer.fit` stopped: `max_epochs={max_epochs!r}` reached.")
            return True
        if self.trainer.should_stop and self.can_stop_early():
            rank_zero_debug("`Trainer.fit` stopped: `trainer.should_stop` was set.")
            return True
        return False

    def setup_data(self) -> None:
        """Call ``train_dataloader`` (once per fit) and work out the batch counts."""
        if self.train_loader is not None:
            return
        trainer = self.trainer
        loader = trainer.data_sources.load("train", trainer.hooks)
        combined = combined_for_training(loader)  # several loaders: read together, as Lightning combines them
        if combined is not None:
            self.train_loader = combined.map(self._prepare_train_loader).batches()
        else:
            self.train_loader = data.make_resumable(self._prepare_train_loader(loader))
        self.train_loaded_epoch = self.state.epoch
        if isinstance(self.train_loader, DataLoader | Batches) and self.resume is None:
            # Lightning makes the iterator as soon as the loader is set up (drawing its seed before the epoch's
            # hooks); its first epoch reads that one, later epochs make their own
            self.epoch_start_rng = rng_of(data.generators(self.train_loader))
            self.early_iterator = iter(self.train_loader)
        self.num_training_batches = data.limit_batches(
            self.train_loader, trainer.limit_train_batches, "limit_train_batches"
        )
        if data.length(self.train_loader) == 0:
            rank_zero_warn(
                "Total length of `DataLoader` across ranks is zero. Please make sure this was your intention."
            )
        if trainer.loggers and self.num_training_batches < trainer.log_every_n_steps and not trainer.fast_dev_run:
            rank_zero_warn(
                f"The number of training batches ({self.num_training_batches:g}) is smaller than the logging interval "
                f"Trainer(log_every_n_steps={trainer.log_every_n_steps}). Set a lower value for log_every_n_steps if "
                "you want to see logs for the training epoch.",
                category=PossibleUserWarning,
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

    def _prepare_train_loader(self, loader: Any) -> Iterable:
        if self.trainer.overfit_batches:
            loader = data.in_order(loader, "train")
        return data.for_this_process(loader, self.trainer)

    def validation_wanted(self) -> bool:
        trainer = self.trainer
        return (
            trainer.limit_val_batches != 0 and trainer.has_step("validation_step") and trainer.data_sources.has("val")
        )

    def load_val_data(self) -> None:
        if self.val_loaders or not self.validation_wanted():
            return
        trainer = self.trainer
        loaders = data.as_loader_list(trainer.data_sources.load("val", trainer.hooks), "validation")
        if trainer.overfit_batches:
            loaders = [data.in_order(dl, "val") for dl in loaders]
        self.val_loaders = [data.for_this_process(dl, trainer, shuffle=False) for dl in loaders]
        self.num_val_batches = [
            data.limit_batches(dl, trainer.limit_val_batches, "limit_val_batches") for dl in self.val_loaders
        ]
        self.val_steps_logged = [0] * len(self.val_loaders)  # the loggers' step of each loader's step metrics
        self.val_loaded_epoch = self.state.epoch

    @property
    def enable_validation(self) -> bool:
        return bool(self.val_loaders) and sum(self.num_val_batches) > 0

    def sanity_check(self) -> None:
        """A few validation batches before training, with the random state saved and restored around them, so
        training draws the same numbers with or without it (as in Lightning)."""
        trainer = self.trainer
        rng_states = collect_rng_states()
        steps = trainer.num_sanity_val_steps
        trainer.state.stage = RunningStage.SANITY_CHECKING
        stage.reset_metrics(trainer)
        trainer.hooks.call_callbacks("on_sanity_check_start")
        self.load_val_data()
        limits = [n if steps == -1 else min(n, steps) for n in self.num_val_batches]
        evaluation_loop.evaluate(trainer, "validate", self.val_loaders, limits, inside_fit=True)
        trainer.hooks.call_callbacks("on_sanity_check_end")
        trainer.state.stage = RunningStage.TRAINING
        stage.reset_metrics(trainer)  # what the sanity check logged must not look like a real validation result
        restore_rng_states(rng_states)

    # ================================================================== epochs and batches
    def train_epoch(self) -> None:
        """One training epoch; after a resume, the rest of the interrupted one."""
        resume, self.resume = self.resume, None
        if resume is None and self._reload_due(self.train_loaded_epoch):
            self.train_loader = None
            self.setup_data()  # before on_train_epoch_start, as Lightning reloads
        if resume is None or resume.phase != LoopPhase.EPOCH_END:
            self._train_batches(resume)
        self._end_epoch(resume)

    def _train_batches(self, resume: ResumePoint | None) -> None:
        state, loader = self.state, self.train_loader
        assert loader is not None
        if resume is not None and resume.phase == LoopPhase.BEFORE_BATCH and state.batch_idx == 0:
            resume.restore_rng()  # the checkpoint was taken between epochs: start this one afresh
            resume = None
        data.set_epoch(loader, state.epoch)
        if resume is None:
            state.batch_idx = 0
            state.phase = LoopPhase.BEFORE_BATCH
            self.trainer.results.reset()
            self.trainer.hooks.call_hook("on_train_epoch_start")
        iterator = epoch_iterator(self, loader, resume)
        try:
            with self.trainer.hooks.profile("run_training_epoch"):
                self._run_batches(iterator, resume)
        finally:
            data.close_iterator(iterator)

    def _run_batches(self, iterator: Iterator, resume: ResumePoint | None) -> None:
        trainer, state, hooks, optimization = self.trainer, self.state, self.trainer.hooks, self.optimization
        automatic = trainer.lightning_module.automatic_optimization
        step_args = data.StepArgs(trainer.lightning_module.training_step, pass_dataloader_idx=False)
        num_batches = self.num_training_batches
        if resume is not None and resume.phase in (LoopPhase.AFTER_BATCH, LoopPhase.AFTER_VALIDATION):
            # the checkpoint was taken inside this batch's end: finish it as the interrupted run would have
            done = state.batch_idx - 1
            if self._finish_batch(done, done + 1 >= num_batches, validated=resume.phase == LoopPhase.AFTER_VALIDATION):
                return
        while state.batch_idx < num_batches:
            try:
                with hooks.profile("[_TrainingEpochLoop].train_dataloader_next"):
                    batch = next(iterator)
            except StopIteration:
                break
            batch_idx = state.batch_idx
            is_last = batch_idx + 1 >= num_batches
            state.phase = LoopPhase.BEFORE_BATCH
            batch = hooks.to_device(batch, 0)
            trainer.results.batch = batch
            trainer.results.clear_step_values()

            hooks.call_callbacks("on_train_batch_start", batch, batch_idx)
            response = hooks.call_module("on_train_batch_start", batch, batch_idx)
            hooks.call_strategy("on_train_batch_start", batch, batch_idx)
            if response == -1:
                optimization.update_schedulers("step", plateau=False, accumulating=False)
                break
            optimization.stepping = automatic and ((batch_idx + 1) % trainer.accumulate_grad_batches == 0 or is_last)
            with hooks.profile("run_training_batch"):
                if automatic:
                    output = optimization.automatic_step(batch, batch_idx, step_args(batch, batch_idx))
                else:
                    output = optimization.manual_step(step_args(batch, batch_idx))
            state.batch_idx += 1
            state.total_batch_idx += 1
            optimization.update_schedulers("step", plateau=False, accumulating=automatic and not optimization.stepping)
            if is_last:
                optimization.update_schedulers("epoch", plateau=False, accumulating=False)

            state.phase = LoopPhase.AFTER_BATCH
            hooks.call_callbacks("on_train_batch_end", output, batch, batch_idx)
            hooks.call_module("on_train_batch_end", output, batch, batch_idx)
            if self._finish_batch(batch_idx, is_last, validated=False):
                break

    def _finish_batch(self, batch_idx: int, is_last: bool, validated: bool) -> bool:
        """What follows ``on_train_batch_end``: logging, validation, plateau schedulers. True: stop the epoch."""
        trainer, state = self.trainer, self.state
        accumulating = trainer.lightning_module.automatic_optimization and not (
            (batch_idx + 1) % trainer.accumulate_grad_batches == 0 or is_last
        )
        self._log_train_step(accumulating)
        if not validated and self._should_validate(batch_idx, is_last):
            if not accumulating:
                trainer.hooks.call_module("on_validation_model_zero_grad")
            if self._reload_due(self.val_loaded_epoch):
                self.val_loaders = []
                self.load_val_data()
            state.phase = LoopPhase.AFTER_VALIDATION
            evaluation_loop.evaluate(
                trainer, "validate", self.val_loaders, self.num_val_batches, inside_fit=True,
                steps_logged=self.val_steps_logged,
            )  # fmt: skip
        self.optimization.update_schedulers("step", plateau=True, accumulating=accumulating)
        if not accumulating:
            state.batches_that_stepped += 1
        state.phase = LoopPhase.BEFORE_BATCH
        return self.max_steps_reached() or (trainer.should_stop and self.can_stop_early())

    def _end_epoch(self, resume: ResumePoint | None) -> None:
        trainer, state, hooks = self.trainer, self.state, self.trainer.hooks
        last_batch_reached = state.batch_idx >= self.num_training_batches
        trainer.results.epoch_view = True
        if resume is None or resume.phase != LoopPhase.EPOCH_END:
            state.phase = LoopPhase.EPOCH_END
            trainer.results.current_fx = None
            # the epoch's reductions are what callbacks and the module see here (Lightning's epoch-end view),
            # including what the module's own hook logs before the monitoring callbacks run
            self._publish_epoch_metrics()
            hooks.call_callbacks("on_train_epoch_end", monitoring=False)
            hooks.call_module("on_train_epoch_end")
            self._publish_epoch_metrics()
            hooks.call_callbacks("on_train_epoch_end", monitoring=True)
        else:
            resume.restore_rng()
        callback, logged, pbar = trainer.results.epoch_metrics()
        trainer.callback_metrics.update(callback)
        trainer.progress_bar_metrics.update(pbar)
        if last_batch_reached:
            self.optimization.update_schedulers("epoch", plateau=True, accumulating=False)
        if logged:
            stage.send_to_loggers(trainer, logged, step=state.batches_that_stepped - 1)
        state.epoch += 1
        state.batch_idx = 0
        state.phase = LoopPhase.BEFORE_BATCH

    def _reload_due(self, loaded_epoch: int) -> bool:
        every = self.trainer.reload_dataloaders_every_n_epochs
        return bool(every) and self.state.epoch - loaded_epoch >= every

    def _publish_epoch_metrics(self) -> None:
        stage.publish_metrics(self.trainer)  # in the epoch view: computed on every rank (sync_dist) at once

    def _should_validate(self, batch_idx: int, is_last: bool) -> bool:
        trainer = self.trainer
        if not self.enable_validation:
            return False
        every = trainer.check_val_every_n_epoch
        if every is not None and (self.state.epoch + 1) % every != 0:
            return False
        if trainer.should_stop and self.can_stop_early():
            return True
        if math.isinf(self.val_check_batch):
            return is_last
        current = self.state.total_batch_idx - 1 if every is None else batch_idx
        return (current + 1) % self.val_check_batch == 0

    def _log_train_step(self, accumulating: bool) -> None:
        """Send the step's metrics to the loggers every ``log_every_n_steps`` optimizer steps (never while
        accumulating, as Lightning); the trainer's metric dicts show them at once (see ``MetricStore.view``)."""
        trainer = self.trainer
        stage.publish_metrics(trainer)
        logged = trainer.results.view()[1]
        every = trainer.log_every_n_steps  # 0: never (barebones)
        log_now = every > 0 and ((self.state.batches_that_stepped + 1) % every == 0 or trainer.should_stop)
        if logged and log_now and not accumulating:
            stage.send_to_loggers(trainer, logged, step=self.state.batches_that_stepped)

    # ================================================================== state for checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.state),
            "phase": self.state.phase.value,  # plain data: checkpoints load with weights_only=True
            "epoch_start_rng": self.epoch_start_rng,
            "world_size": self.trainer.world_size,
            "accumulate_grad_batches": self.trainer.accumulate_grad_batches,
        }

    def load_state_dict(self, state: dict[str, Any], rng_states: dict[str, Any] | None) -> None:
        """Continue where the checkpoint was taken: at its next batch, or after its epoch."""
        if "epoch_progress" in state:  # written by Lightning
            state = from_lightning_fit_loop(state)
        fields = {name: state[name] for name in asdict(self.state)}
        self.state = LoopState(**{**fields, "phase": LoopPhase(fields["phase"])})
        saved_world = state.get("world_size", self.trainer.world_size)
        if saved_world != self.trainer.world_size:
            self.keep_global_batch(saved_world, state.get("accumulate_grad_batches", 1))
        if self.state.phase == LoopPhase.FIT_END:
            if rng_states is not None:
                restore_rng_states(rng_states)
            return
        self.resume = ResumePoint(self.state.phase, state["epoch_start_rng"], rng_states)

    def keep_global_batch(self, saved_world: int, saved_accumulate: int) -> None:
        """Running on another number of workers than ``saved_world`` (elastic training): keep the global batch
        size; an interrupted epoch continues after the same samples, since DistributedSampler deals one global
        order out to the ranks."""
        trainer, world = self.trainer, self.trainer.world_size
        trainer.accumulate_grad_batches, message = scaled_accumulation(
            saved_world, saved_accumulate, world, trainer.accumulate_grad_batches
        )
        self.state.batch_idx = self.state.batch_idx * saved_world // world
        if trainer.is_global_zero:
            warnings.warn(f"Resuming on {world} workers instead of {saved_world}: {message}.", stacklevel=2)


def _warn_eval_mode_modules(module: torch.nn.Module) -> None:
    """Lightning trains submodules in the mode the user left them (a frozen backbone stays in eval), and says so."""
    in_eval = sum(1 for m in module.modules() if not m.training)
    if in_eval:
        rank_zero_warn(
            f"Found {in_eval} module(s) in eval mode at the start of training. This may lead to unexpected behavior "
            "during training. If this is intentional, you can ignore this warning.",
            category=PossibleUserWarning,
        )

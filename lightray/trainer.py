"""Trainer: Lightning's Trainer arguments and entry points. It configures, then hands each stage to its launcher
(in this process, or on Ray Train workers), which runs the one loop."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Sequence
from typing import Any

import torch

from lightray import trainer_args
from lightray.callbacks.callback import Callback
from lightray.callbacks.checkpoint import Checkpoint
from lightray.core.datamodule import LightningDataModule
from lightray.core.module import LightningModule
from lightray.data.sources import DataSources
from lightray.errors import MisconfigurationError
from lightray.hooks import REMOVED_CALLBACK_HOOKS, REMOVED_MODULE_HOOKS, check_removed_hooks, is_overridden
from lightray.launchers import Launcher
from lightray.launchers.in_process import InProcessLauncher
from lightray.loops import evaluation_loop
from lightray.loops.evaluation_loop import EvalProgress
from lightray.loops.fit_loop import FitLoop
from lightray.loops.hook_caller import HookCaller
from lightray.metrics import MetricStore
from lightray.optimization import LightningOptimizer, LRSchedulerConfig
from lightray.precision import Precision, make_precision
from lightray.profilers import Profiler, make_profiler
from lightray.ray_backend.launcher import RayLauncher
from lightray.ray_backend.options import RayOptions
from lightray.states import RunningStage, TrainerFn, TrainerState, TrainerStatus
from lightray.strategies import DDPStrategy, SingleDeviceStrategy, Strategy
from lightray.strategies.fsdp import fsdp_options
from lightray.trainer_properties import TrainerProperties


class Trainer(TrainerProperties):
    """Lightning 2.x's Trainer. ``fit``, ``validate``, ``test`` and ``predict`` run the one training loop.

    Built and called on the driver. Locally (the default) the loop runs in this process on the CPU or
    one GPU; no Ray is started.
    """

    def __init__(
        self,
        *,
        accelerator: str = "auto",
        devices: int | str | Sequence[int] = "auto",
        precision: str | int = "32-true",
        logger: Any = True,
        callbacks: Callback | list[Callback] | None = None,
        fast_dev_run: int | bool = False,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int = -1,
        min_steps: int | None = None,
        max_time: str | datetime.timedelta | dict[str, int] | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        val_check_interval: int | float | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None,
        inference_mode: bool = True,
        default_root_dir: str | os.PathLike | None = None,
        num_nodes: int = 1,
        num_workers: int | tuple[int, int] = 0,
        use_gpu: bool = False,
        resources_per_worker: dict[str, float] | None = None,
        placement_strategy: str = "PACK",
        storage_path: str | os.PathLike | None = None,
        name: str | None = None,
        max_failures: int = 0,
        scaling_config: Any = None,
        run_config: Any = None,
        strategy: str | DDPStrategy | Strategy = "auto",
        reload_dataloaders_every_n_epochs: int = 0,
        overfit_batches: int | float = 0.0,
        benchmark: bool | None = None,
        sync_batchnorm: bool = False,
        detect_anomaly: bool = False,
        use_distributed_sampler: bool = True,
        barebones: bool = False,
        plugins: Any = None,
        profiler: str | Profiler | None = None,
    ) -> None:
        """Configure training; see Lightning's Trainer for the shared arguments.

        Ray arguments (``num_workers >= 1`` runs each stage on Ray Train workers with DDP):
        ``use_gpu``, ``resources_per_worker``, ``placement_strategy``, ``storage_path`` (folder or URI for
        checkpoints), ``name`` (the run's name: rerunning with the same name resumes it), ``max_failures``,
        or Ray's own ``scaling_config=ray.train.ScalingConfig(...)`` / ``run_config=ray.train.RunConfig(...)``.
        Lightning's ``devices`` / ``num_nodes`` above one map to ``num_workers``. ``strategy``: "auto", "ddp" (and
        Lightning's other DDP names) or ``lightray.strategies.DDPStrategy(find_unused_parameters=...)``, whose
        options reach the DDP wrapper on every worker (a Strategy object is how each worker builds its Trainer).
        """
        init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "callbacks", "logger", "__class__")}
        max_time_seconds, device, num_workers, use_gpu = trainer_args.check_arguments(
            {**init_kwargs, "callbacks": callbacks, "logger": logger}
        )

        if barebones:  # what costs speed is off; check_arguments refused it being asked for explicitly
            logger, enable_checkpointing, enable_progress_bar, enable_model_summary = False, False, False, False
            log_every_n_steps, num_sanity_val_steps = 0, 0
        self.barebones, self.detect_anomaly, self.sync_batchnorm = barebones, detect_anomaly, sync_batchnorm
        self.use_distributed_sampler = use_distributed_sampler
        self.overfit_batches = overfit_batches
        if overfit_batches:  # the same first batches every epoch, for training and for validation
            limit_train_batches = limit_val_batches = overfit_batches
        self.benchmark = False if benchmark is None and deterministic else benchmark
        if self.benchmark is not None:
            torch.backends.cudnn.benchmark = self.benchmark
        self.fast_dev_run = int(fast_dev_run)
        if self.fast_dev_run:
            n = self.fast_dev_run
            limit_train_batches = limit_val_batches = limit_test_batches = limit_predict_batches = n
            max_epochs, max_steps, num_sanity_val_steps, val_check_interval = 1, n, 0, 1.0
            logger = False
        self.max_epochs = max_epochs if max_epochs is not None else (1000 if max_steps == -1 else -1)
        self.min_epochs = min_epochs
        self.max_steps = max_steps
        self.min_steps = min_steps
        self.limit_train_batches = 1.0 if limit_train_batches is None else limit_train_batches
        self.limit_val_batches = 1.0 if limit_val_batches is None else limit_val_batches
        self.limit_test_batches = 1.0 if limit_test_batches is None else limit_test_batches
        self.limit_predict_batches = 1.0 if limit_predict_batches is None else limit_predict_batches
        self.val_check_interval = 1.0 if val_check_interval is None else val_check_interval
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.num_sanity_val_steps = 2 if num_sanity_val_steps is None else num_sanity_val_steps
        self.log_every_n_steps = 50 if log_every_n_steps is None else log_every_n_steps
        self.accumulate_grad_batches = accumulate_grad_batches
        self.reload_dataloaders_every_n_epochs = reload_dataloaders_every_n_epochs
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.inference_mode = inference_mode
        self.default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else os.getcwd()
        self.enable_checkpointing = enable_checkpointing is not False
        self.enable_progress_bar = enable_progress_bar is not False
        self.enable_model_summary = enable_model_summary is not False
        self.deterministic = deterministic
        if deterministic:
            trainer_args.set_deterministic(warn_only=deterministic == "warn")

        self.ray_options = RayOptions(
            num_workers=num_workers,
            use_gpu=use_gpu,
            resources_per_worker=resources_per_worker,
            placement_strategy=placement_strategy,
            storage_path=os.fspath(storage_path) if storage_path is not None else None,
            name=name,
            max_failures=max_failures,
            scaling_config=scaling_config,
            run_config=run_config,
        )
        self.launcher: Launcher = (
            RayLauncher(self.ray_options, init_kwargs)
            if self.ray_options.on_ray
            else InProcessLauncher(self.ray_options)
        )
        self.logged_metrics_history: list[dict[str, Any]] = []  # filled on the driver by Ray runs
        self.strategy: Strategy = strategy if isinstance(strategy, Strategy) else SingleDeviceStrategy(device)
        self._sharded = fsdp_options(strategy) is not None or self.strategy.shards_state
        self.precision_plugin: Precision = make_precision(str(precision), self.strategy.root_device.type)
        self.precision = self.precision_plugin.name
        self.callbacks: list[Callback] = _as_list(callbacks)
        for callback in self.callbacks:
            check_removed_hooks(callback, REMOVED_CALLBACK_HOOKS, "Callback")
        self.callbacks += trainer_args.default_callbacks(self, self.callbacks, max_time_seconds)
        self.loggers: list[Any] = trainer_args.make_loggers(logger, self.default_root_dir)

        self.lightning_module: LightningModule = None  # type: ignore[assignment]
        self.datamodule: LightningDataModule | None = None
        self.data_sources = DataSources()
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lr_scheduler_configs: list[LRSchedulerConfig] = []
        self.lightning_optimizers: list[LightningOptimizer] = []
        self._callback_metrics: dict[str, torch.Tensor] = {}  # read through the properties of the same names
        self._logged_metrics: dict[str, torch.Tensor] = {}
        self._progress_bar_metrics: dict[str, torch.Tensor] = {}
        self.should_stop = False
        self.ckpt_path: str | None = None
        self.predict_outputs: Any = None  # the latest predict epoch's outputs, as on_predict_epoch_end sees them
        self.state = TrainerState()
        self.hooks = HookCaller(self)
        self.results = MetricStore(self.strategy, training=True)  # what ``self.log`` records in the running pass
        self.eval_progress = EvalProgress()
        self.profiler: Profiler = make_profiler(profiler)
        self.fit_loop = FitLoop(self)

    # ================================================================== entry points
    def init_module(self, empty_init: bool | None = None) -> contextlib.AbstractContextManager:
        """``with trainer.init_module(): model = LitModel()``: parameters created in the precision's dtype (a "true"
        precision such as ``"bf16-true"``); they move to the device when the stage starts. With FSDP and
        ``empty_init=True`` they are created on the meta device (no memory) and each worker gives its shards memory
        and ``reset_parameters()`` after sharding, as Lightning's FSDP does. Driver."""
        context = contextlib.ExitStack()
        if empty_init and self._sharded:
            context.enter_context(torch.device("meta"))
        context.enter_context(self.precision_plugin.module_init_context())
        return context

    def fit(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
    ) -> None:
        """Train ``model``; validates along the way when it has ``validation_step`` and validation data.

        Called on the driver. ``ckpt_path`` ("last", "best" or a path) resumes from a checkpoint.
        """
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        self._attach(model, datamodule, TrainerFn.FITTING, train=train_dataloaders, val=val_dataloaders)
        trainer_args.check_fit(self, model)
        self.ckpt_path = ckpt_path
        self.should_stop = False
        self._launch(TrainerFn.FITTING, self.fit_loop.run)

    def validate(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """Run one validation epoch; returns the logged epoch metrics, one dict per dataloader. Driver."""
        return self._evaluate(TrainerFn.VALIDATING, model, dataloaders, ckpt_path, verbose, datamodule)

    def test(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """Run one test epoch; returns the logged epoch metrics, one dict per dataloader. Driver."""
        return self._evaluate(TrainerFn.TESTING, model, dataloaders, ckpt_path, verbose, datamodule)

    def predict(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        return_predictions: bool = True,
        ckpt_path: str | None = None,
    ) -> list[Any] | None:
        """Run ``predict_step`` over the predict data; returns the outputs (a list per dataloader). Driver."""
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        self._attach(model, datamodule, TrainerFn.PREDICTING, predict=dataloaders)
        self.ckpt_path = ckpt_path
        predictions = self._launch(TrainerFn.PREDICTING, lambda: evaluation_loop.run_predict(self))
        return predictions if return_predictions else None

    def _evaluate(
        self,
        fn: TrainerFn,
        model: LightningModule | None,
        dataloaders: Any,
        ckpt_path: str | None,
        verbose: bool,
        datamodule: LightningDataModule | None,
    ) -> list[dict[str, float]]:
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        key = "val" if fn == TrainerFn.VALIDATING else "test"
        self._attach(model, datamodule, fn, **{key: dataloaders})
        step = "validation_step" if fn == TrainerFn.VALIDATING else "test_step"
        if not self.has_step(step):
            raise MisconfigurationError(
                f"`{type(self.lightning_module).__name__}` has no `{step}`; define it to {fn.value}."
            )
        self.ckpt_path = ckpt_path
        results = self._launch(fn, lambda: evaluation_loop.run_evaluation(self, fn.value))
        if verbose and self.is_global_zero:
            evaluation_loop.print_results(fn.value, results)
        return results

    def _launch(self, fn: TrainerFn, run: Any) -> Any:
        self.state.status = TrainerStatus.RUNNING
        try:
            result = self.launcher.launch(self, fn, run)
        except BaseException:
            self.state.status = TrainerStatus.INTERRUPTED
            raise
        self.state.status, self.state.stage = TrainerStatus.FINISHED, None
        return result

    def _attach(self, model: LightningModule | None, datamodule: LightningDataModule | None, fn: TrainerFn,
                **sources: Any) -> None:  # fmt: skip
        if model is None:
            if self.lightning_module is None:
                raise MisconfigurationError(f"`Trainer.{fn.value}` needs a model: pass `{fn.value}(model, ...)`.")
            model = self.lightning_module
        if not isinstance(model, LightningModule):
            raise MisconfigurationError(
                f"`Trainer.{fn.value}` expects a `lightray.LightningModule`, got {type(model).__name__}. If it is a "
                "Lightning module, change its import to `import lightray as pl`."
            )
        if "_parameters" not in vars(model):  # nn.Module.__init__ never ran
            raise MisconfigurationError(
                f"`{type(model).__name__}.__init__` did not call `super().__init__()`; call it first in `__init__`, "
                "before assigning layers or other attributes."
            )
        check_removed_hooks(model, REMOVED_MODULE_HOOKS, "LightningModule")
        given = {k: v for k, v in sources.items() if v is not None}
        if given and datamodule is not None:
            raise MisconfigurationError(f"`Trainer.{fn.value}` got dataloaders and a datamodule; pass one of them.")
        model.trainer = self
        if datamodule is not None:
            datamodule.trainer = self
        self.lightning_module, self.datamodule = model, datamodule
        self.data_sources = DataSources(model, datamodule, given)
        self.state.fn = fn
        self.state.stage = _FIRST_STAGE[fn]
        self.fit_loop.reset()  # validate/test after fit keep the epoch and step counters
        self.results = MetricStore(self.strategy, training=fn == TrainerFn.FITTING)
        extra = _as_list(self.hooks.call_configure_callbacks(model))
        if extra:
            types_ = {type(cb) for cb in extra}
            self.callbacks = [cb for cb in self.callbacks if type(cb) not in types_] + extra
        # callbacks that save checkpoints run last, so they see what the others did (as in Lightning)
        self.callbacks.sort(key=lambda cb: isinstance(cb, Checkpoint))
        self.hooks.index()

    def has_step(self, name: str) -> bool:
        """Whether the attached module defines ``name`` (``training_step``, ``validation_step``, ...)."""
        return is_overridden(self.lightning_module, name, LightningModule)

    def save_checkpoint(
        self, filepath: str | os.PathLike, weights_only: bool = False, storage_options: dict[str, Any] | None = None
    ) -> None:
        """Write a checkpoint of the current training state to ``filepath`` (local path or URI), atomically.

        Call it on every rank (rank 0 writes). The file is complete and durable when this returns, unless
        ``storage_options={"background": True}`` (what ModelCheckpoint uses), which finishes the fsync and
        rename off the training thread, before the stage ends.
        """
        from lightray.checkpoint import save_trainer_checkpoint

        with self.hooks.profile("save_checkpoint"):
            save_trainer_checkpoint(self, os.fspath(filepath), weights_only, storage_options)


_FIRST_STAGE = {
    TrainerFn.FITTING: RunningStage.TRAINING,
    TrainerFn.VALIDATING: RunningStage.VALIDATING,
    TrainerFn.TESTING: RunningStage.TESTING,
    TrainerFn.PREDICTING: RunningStage.PREDICTING,
}


def _as_list(callbacks: Any) -> list[Any]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Sequence):
        return list(callbacks)
    return [callbacks]

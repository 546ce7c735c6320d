"""Trainer: Lightning's Trainer arguments and entry points; configures, then hands work to the loop."""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from lightray import trainer_args
from lightray.callbacks.callback import Callback
from lightray.datamodule import LightningDataModule
from lightray.errors import MisconfigurationError
from lightray.hooks import REMOVED_CALLBACK_HOOKS, REMOVED_MODULE_HOOKS, check_removed_hooks
from lightray.loop import Loop
from lightray.module import LightningModule
from lightray.optimization import LightningOptimizer, LRSchedulerConfig
from lightray.precision import PRECISIONS, Precision, make_precision
from lightray.strategies import SingleDeviceStrategy, Strategy
from lightray.tune.trial import match_workers as match_tune_trial_workers


class Trainer:
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
    ) -> None:
        """Configure training; see Lightning's Trainer for the shared arguments.

        Ray arguments (``num_workers >= 1`` runs each stage on Ray Train workers with DDP):
        ``use_gpu``, ``resources_per_worker``, ``placement_strategy``, ``storage_path`` (folder or URI for
        checkpoints), ``name`` (the run's name: rerunning with the same name resumes it), ``max_failures``,
        or Ray's own ``scaling_config=ray.train.ScalingConfig(...)`` / ``run_config=ray.train.RunConfig(...)``.
        Lightning's ``devices`` / ``num_nodes`` above one map to ``num_workers``.
        """
        self._init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "callbacks", "logger", "__class__")}
        errors: list[str] = []
        precision = str(precision)
        if precision not in PRECISIONS:
            errors.append(f"precision={precision!r}: use one of {list(PRECISIONS)}")
        for arg, value in (("max_epochs", max_epochs), ("min_epochs", min_epochs), ("min_steps", min_steps)):
            if (
                value is not None
                and (not isinstance(value, int) or value < 0)
                and not (arg == "max_epochs" and value == -1)
            ):
                errors.append(
                    f"{arg}={value!r}: must be a non-negative int"
                    + (" (or -1 for no limit)" if arg == "max_epochs" else "")
                )
        if not isinstance(max_steps, int) or max_steps < -1:
            errors.append(f"max_steps={max_steps!r}: must be -1 (no limit) or a non-negative int")
        for arg, limit in (
            ("limit_train_batches", limit_train_batches),
            ("limit_val_batches", limit_val_batches),
            ("limit_test_batches", limit_test_batches),
            ("limit_predict_batches", limit_predict_batches),
        ):
            errors += trainer_args.check_limit(arg, limit)
        if val_check_interval is not None:
            if isinstance(val_check_interval, float) and not 0.0 < val_check_interval <= 1.0:
                errors.append(
                    f"val_check_interval={val_check_interval}: a float must be in (0.0, 1.0]; an int counts batches"
                )
            elif isinstance(val_check_interval, int) and val_check_interval < 1:
                errors.append(f"val_check_interval={val_check_interval}: an int must be >= 1")
        if check_val_every_n_epoch is not None and (
            not isinstance(check_val_every_n_epoch, int) or check_val_every_n_epoch < 1
        ):
            errors.append(f"check_val_every_n_epoch={check_val_every_n_epoch!r}: must be an int >= 1 or None")
        if not isinstance(accumulate_grad_batches, int) or accumulate_grad_batches < 1:
            errors.append(f"accumulate_grad_batches={accumulate_grad_batches!r}: must be an int >= 1")
        if gradient_clip_val is not None and (not isinstance(gradient_clip_val, int | float) or gradient_clip_val < 0):
            errors.append(f"gradient_clip_val={gradient_clip_val!r}: must be a number >= 0")
        if gradient_clip_algorithm not in (None, "norm", "value"):
            errors.append(f"gradient_clip_algorithm={gradient_clip_algorithm!r}: use 'norm' or 'value'")
        if num_sanity_val_steps is not None and (
            not isinstance(num_sanity_val_steps, int) or num_sanity_val_steps < -1
        ):
            errors.append(f"num_sanity_val_steps={num_sanity_val_steps!r}: must be -1 (all) or an int >= 0")
        if log_every_n_steps is not None and (not isinstance(log_every_n_steps, int) or log_every_n_steps < 1):
            errors.append(f"log_every_n_steps={log_every_n_steps!r}: must be an int >= 1")
        if isinstance(fast_dev_run, int) and not isinstance(fast_dev_run, bool) and fast_dev_run < 0:
            errors.append(f"fast_dev_run={fast_dev_run}: must be a bool or an int >= 0")
        if deterministic not in (None, True, False, "warn"):
            errors.append(f"deterministic={deterministic!r}: use True, False or 'warn'")
        max_time_seconds = None
        try:
            max_time_seconds = trainer_args.parse_max_time(max_time)
        except ValueError as err:
            errors.append(str(err))
        elastic = isinstance(num_workers, tuple) and len(num_workers) == 2 and 1 <= num_workers[0] <= num_workers[1]
        if not elastic and (not isinstance(num_workers, int) or num_workers < 0):
            errors.append(
                f"num_workers={num_workers!r}: must be 0 (run in this process), the number of Ray workers, or "
                "(min, max) for elastic training"
            )
        if not isinstance(max_failures, int) or max_failures < -1:
            errors.append(f"max_failures={max_failures!r}: must be -1 (retry forever) or an int >= 0")
        requested = trainer_args.requested_devices(devices) * (num_nodes if isinstance(num_nodes, int) else 1)
        if requested > 1 and num_workers == 0 and scaling_config is None:
            warnings.warn(
                f"devices={devices!r}, num_nodes={num_nodes}: lightray runs one Ray Train worker per device, so "
                f"this is num_workers={requested} (use_gpu={accelerator in ('gpu', 'cuda')}). Pass num_workers= "
                "to say so directly.",
                stacklevel=2,
            )
            num_workers, use_gpu = requested, use_gpu or accelerator in ("gpu", "cuda")
            devices = 1
        device: torch.device | None = None
        try:
            device = trainer_args.select_device("cpu" if num_workers or scaling_config else accelerator, devices)
        except ValueError as err:
            errors.append(str(err))
        if device is not None and device.type == "cpu" and precision in ("16-mixed", "16"):
            errors.append(
                "precision='16-mixed' needs a GPU: fp16 autocast is not supported on the CPU; use 'bf16-mixed'"
            )
        if errors:
            listing = "\n".join(f"  - {e}" for e in errors)
            raise MisconfigurationError(f"Invalid Trainer arguments ({len(errors)}):\n{listing}")
        assert device is not None

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

        self._ray_options = {
            "num_workers": num_workers,
            "use_gpu": use_gpu,
            "resources_per_worker": resources_per_worker,
            "placement_strategy": placement_strategy,
            "storage_path": os.fspath(storage_path) if storage_path is not None else None,
            "name": name,
            "max_failures": max_failures,
            "scaling_config": scaling_config,
            "run_config": run_config,
        }
        self.logged_metrics_history: list[dict[str, Any]] = []  # filled on the driver by Ray runs
        self.strategy: Strategy = SingleDeviceStrategy(device)
        self.precision_plugin: Precision = make_precision(precision, device.type)
        self.precision = self.precision_plugin.name
        self.callbacks: list[Callback] = _as_list(callbacks)
        for callback in self.callbacks:
            check_removed_hooks(callback, REMOVED_CALLBACK_HOOKS, "Callback")
        self.callbacks += trainer_args.default_callbacks(self, self.callbacks, max_time_seconds)
        self.loggers: list[Any] = trainer_args.make_loggers(logger, self.default_root_dir)

        self.lightning_module: LightningModule = None  # type: ignore[assignment]
        self.datamodule: LightningDataModule | None = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lr_scheduler_configs: list[LRSchedulerConfig] = []
        self._lightning_optimizers: list[LightningOptimizer] = []
        self.callback_metrics: dict[str, torch.Tensor] = {}
        self.logged_metrics: dict[str, torch.Tensor] = {}
        self.progress_bar_metrics: dict[str, torch.Tensor] = {}
        self.should_stop = False
        self.validating = self.testing = False
        self.state_fn: str | None = None
        self.ckpt_path: str | None = None
        self._loop = Loop(self)
        self._sources: dict[str, Any] = {}

    # ================================================================== entry points
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
        self._attach(model, datamodule, "fit", train=train_dataloaders, val=val_dataloaders)
        if not self._has_step("training_step"):
            raise MisconfigurationError(
                f"`{type(model).__name__}` has no `training_step(self, batch, batch_idx)`; define it to train."
            )
        if not _overrides(model, "configure_optimizers"):
            raise MisconfigurationError(
                f"`{type(model).__name__}` has no `configure_optimizers`. Define it and return an optimizer, "
                "e.g. `return torch.optim.Adam(self.parameters(), lr=1e-3)`."
            )
        if not model.automatic_optimization and self.gradient_clip_val:
            raise MisconfigurationError(
                f"`Trainer(gradient_clip_val={self.gradient_clip_val})` works with automatic optimization only. "
                "With `automatic_optimization = False`, call `self.clip_gradients(opt, gradient_clip_val=...)` "
                "in `training_step` before `opt.step()`, and remove `gradient_clip_val` from the Trainer."
            )
        if not model.automatic_optimization and self.accumulate_grad_batches != 1:
            raise MisconfigurationError(
                "`accumulate_grad_batches` works with automatic optimization only; with manual optimization "
                "step the optimizer every N batches yourself."
            )
        self.ckpt_path = ckpt_path
        self.should_stop = False
        match_tune_trial_workers(self)
        if self.on_ray:
            self._launch_on_ray("fit")
            return
        self._run(self._loop.fit)

    def validate(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """Run one validation epoch; returns the logged epoch metrics, one dict per dataloader. Driver."""
        return self._evaluate("validate", model, dataloaders, ckpt_path, verbose, datamodule)

    def test(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
    ) -> list[dict[str, float]]:
        """Run one test epoch; returns the logged epoch metrics, one dict per dataloader. Driver."""
        return self._evaluate("test", model, dataloaders, ckpt_path, verbose, datamodule)

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
        self._attach(model, datamodule, "predict", predict=dataloaders)
        self.ckpt_path = ckpt_path
        if self.on_ray:
            predictions = self._launch_on_ray("predict")
        else:
            predictions = self._run(self._loop.run_predict)
        return predictions if return_predictions else None

    def _evaluate(
        self,
        stage: str,
        model: LightningModule | None,
        dataloaders: Any,
        ckpt_path: str | None,
        verbose: bool,
        datamodule: LightningDataModule | None,
    ) -> list[dict[str, float]]:
        if isinstance(dataloaders, LightningDataModule):
            datamodule, dataloaders = dataloaders, None
        key = "val" if stage == "validate" else "test"
        self._attach(model, datamodule, stage, **{key: dataloaders})
        step = "validation_step" if stage == "validate" else "test_step"
        if not self._has_step(step):
            raise MisconfigurationError(
                f"`{type(self.lightning_module).__name__}` has no `{step}`; define it to {stage}."
            )
        self.ckpt_path = ckpt_path
        if self.on_ray:
            results = self._launch_on_ray(stage, {"verbose": False})
        else:
            results = self._run(lambda: self._loop.run_evaluation(stage))
        if verbose and self.is_global_zero:
            _print_results(stage, results)
        return results

    def _attach(
        self, model: LightningModule | None, datamodule: LightningDataModule | None, fn: str, **sources: Any
    ) -> None:
        if model is None:
            if self.lightning_module is None:
                raise MisconfigurationError(f"`Trainer.{fn}` needs a model: pass `{fn}(model, ...)`.")
            model = self.lightning_module
        if not isinstance(model, LightningModule):
            raise MisconfigurationError(
                f"`Trainer.{fn}` expects a `lightray.LightningModule`, got {type(model).__name__}. If it is a "
                "Lightning module, change its import to `import lightray as pl`."
            )
        check_removed_hooks(model, REMOVED_MODULE_HOOKS, "LightningModule")
        given = {k: v for k, v in sources.items() if v is not None}
        if given and datamodule is not None:
            raise MisconfigurationError(f"`Trainer.{fn}` got both dataloaders and a datamodule; pass one of them.")
        model.trainer = self
        if datamodule is not None:
            datamodule.trainer = self
        self.lightning_module, self.datamodule = model, datamodule
        self._sources = given
        self.state_fn = fn
        loop = Loop(self)
        if self._loop.stage is not None:
            loop.state = self._loop.state  # validate/test after fit keep the epoch and step counters
        self._loop = loop
        self._attach_model_callbacks(model)
        loop.index_hooks()

    def _attach_model_callbacks(self, model: LightningModule) -> None:
        extra = _as_list(model.configure_callbacks())
        if extra:
            types_ = {type(cb) for cb in extra}
            self.callbacks = [cb for cb in self.callbacks if type(cb) not in types_] + extra
        # callbacks that save checkpoints run last, so they see what the others did (as in Lightning)
        self.callbacks.sort(key=lambda cb: bool(getattr(cb, "_saves_checkpoints", False)))

    def _run(self, fn: Any) -> Any:
        """Run a stage; on failure tell callbacks, datamodule and loggers, then re-raise."""
        from lightray.storage import wait_for_writes

        try:
            result = fn()
            wait_for_writes()  # checkpoints written in the background are in place when the stage returns
        except BaseException as exception:
            self._loop.call_callbacks("on_exception", exception)
            if self.datamodule is not None:
                self.datamodule.on_exception(exception)
            for logger in self.loggers:
                logger.finalize("failed")
            with contextlib.suppress(Exception):
                wait_for_writes()  # finish what was saved before the failure; the failure itself wins
            raise
        finally:
            self._loop.metrics.current_fx = None
        for logger in self.loggers:
            logger.finalize("success")
        return result

    @property
    def on_ray(self) -> bool:
        """Whether stages run on Ray Train workers (``num_workers >= 1`` or a ``scaling_config``)."""
        return bool(self._ray_options["num_workers"]) or self._ray_options["scaling_config"] is not None

    def _launch_on_ray(self, stage: str, stage_kwargs: dict[str, Any] | None = None) -> Any:
        from lightray.ray_backend.train import launch

        return launch(self, stage, stage_kwargs)

    def _dataloader_source(self, key: str) -> Any:
        """The loader(s) for ``key``: passed to the entry point, else the datamodule's, else the module's."""
        if key in self._sources:
            return self._sources[key]
        method = f"{key}_dataloader"
        owner = (
            self.datamodule
            if self.datamodule is not None and _overrides(self.datamodule, method)
            else self.lightning_module
        )
        self._loop.metrics.current_fx = method
        return getattr(owner, method)()

    def _has_dataloader_source(self, key: str) -> bool:
        method = f"{key}_dataloader"
        return key in self._sources or any(
            owner is not None and _overrides(owner, method) for owner in (self.datamodule, self.lightning_module)
        )

    def _has_step(self, name: str) -> bool:
        return _overrides(self.lightning_module, name)

    def _load_checkpoint_for_fit(self) -> tuple[dict[str, Any], str] | None:
        """The checkpoint ``fit(ckpt_path=...)`` resumes from, loaded; None to start fresh."""
        from lightray import checkpoint

        if self.ckpt_path is None:
            return None
        path = checkpoint.resolve_ckpt_path(self, self.ckpt_path)
        if path is None:
            return None
        return checkpoint.load_checkpoint_file(path, map_location="cpu"), path

    def _restore_checkpoint_for_eval(self) -> None:
        """Load weights for validate/test/predict(ckpt_path=...)."""
        from lightray import checkpoint

        if self.ckpt_path is None:
            return
        path = checkpoint.resolve_ckpt_path(self, self.ckpt_path)
        if path is not None:
            loaded = checkpoint.load_checkpoint_file(path, map_location="cpu")
            self._loop.call_module("on_load_checkpoint", loaded)
            checkpoint.load_state_into_module(self.lightning_module, loaded, path, strict=True)

    def save_checkpoint(
        self, filepath: str | os.PathLike, weights_only: bool = False, storage_options: dict[str, Any] | None = None
    ) -> None:
        """Write a checkpoint of the current training state to ``filepath`` (local path or URI), atomically.

        Call it on every rank (rank 0 writes). The file is complete and durable when this returns, unless
        ``storage_options={"background": True}`` (what ModelCheckpoint uses), which finishes the fsync and
        rename off the training thread, before the stage ends.
        """
        from lightray.checkpoint import save_trainer_checkpoint

        save_trainer_checkpoint(self, os.fspath(filepath), weights_only, storage_options)

    # ================================================================== state
    @property
    def model(self) -> torch.nn.Module:
        """The model the loop steps: the LightningModule, or its DDP wrapper under Ray."""
        return self.strategy.model if self.strategy.model is not None else self.lightning_module

    @property
    def current_epoch(self) -> int:
        return self._loop.state.epoch

    @property
    def global_step(self) -> int:
        return self._loop.state.global_step

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self.strategy.local_rank

    @property
    def node_rank(self) -> int:
        return self.strategy.node_rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def sanity_checking(self) -> bool:
        return self._loop.sanity_checking

    @property
    def training(self) -> bool:
        return self.state_fn == "fit" and not (self.validating or self.sanity_checking)

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    @property
    def log_dir(self) -> str:
        logger = self.logger
        if logger is not None and getattr(logger, "log_dir", None):
            return str(logger.log_dir)
        return self.default_root_dir

    @property
    def num_training_batches(self) -> float:
        return self._loop.num_training_batches

    @property
    def num_val_batches(self) -> list[float]:
        return self._loop.num_val_batches

    @property
    def train_dataloader(self) -> Iterable | None:
        return self._loop.train_loader

    @property
    def val_dataloaders(self) -> Any:
        loaders = self._loop.val_loaders
        return loaders[0] if len(loaders) == 1 else loaders or None

    @property
    def estimated_stepping_batches(self) -> int | float:
        """Optimizer steps this fit will take (for schedulers such as OneCycleLR); loads the train data."""
        self._loop.load_train_data()
        if self.max_steps != -1:
            return self.max_steps
        if self.max_epochs == -1:
            return math.inf
        per_epoch = math.ceil(self.num_training_batches / self.accumulate_grad_batches)
        return per_epoch * max(self.max_epochs, 1)

    @property
    def checkpoint_callback(self) -> Any:
        found = self.checkpoint_callbacks
        return found[0] if found else None

    @property
    def checkpoint_callbacks(self) -> list[Any]:
        return [cb for cb in self.callbacks if getattr(cb, "_saves_checkpoints", False)]

    @property
    def early_stopping_callback(self) -> Any:
        found = [cb for cb in self.callbacks if type(cb).__name__ == "EarlyStopping"]
        return found[0] if found else None


# ====================================================================== helpers
def _overrides(obj: Any, name: str) -> bool:
    from lightray.hooks import DataHooks

    bases = (LightningModule, LightningDataModule, DataHooks)
    func = getattr(type(obj), name, None)
    return func is not None and all(func is not getattr(base, name, None) for base in bases)


def _as_list(callbacks: Any) -> list[Any]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Sequence):
        return list(callbacks)
    return [callbacks]


def _print_results(stage: str, results: list[dict[str, float]]) -> None:
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

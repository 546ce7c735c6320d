"""The Trainer's read-only views of its state (ranks, stage, loaders, counts, callbacks), as Lightning names them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from lightray.callbacks.checkpoint import Checkpoint
from lightray.callbacks.early_stopping import EarlyStopping
from lightray.callbacks.progress import ProgressBar
from lightray.states import RunningStage

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.loops.fit_loop import FitLoop
    from lightray.metrics import MetricStore
    from lightray.ray_backend.options import RayOptions
    from lightray.states import TrainerState
    from lightray.strategies import Strategy


class TrainerProperties:
    """Mixed into :class:`~lightray.trainer.Trainer`, which sets the attributes declared here."""

    strategy: Strategy
    results: MetricStore
    _callback_metrics: dict[str, torch.Tensor]
    _logged_metrics: dict[str, torch.Tensor]
    _progress_bar_metrics: dict[str, torch.Tensor]
    fit_loop: FitLoop
    state: TrainerState
    ray_options: RayOptions
    lightning_module: LightningModule
    callbacks: list[Any]
    loggers: list[Any]
    default_root_dir: str
    max_steps: int
    max_epochs: int
    accumulate_grad_batches: int
    reload_dataloaders_every_n_epochs: int

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        """What callbacks and ``ckpt_path="best"`` monitors: as in Lightning, the running pass's step values while
        its batches run, its epoch's reductions after (plus what earlier passes of the stage left)."""
        self._callback_metrics.update(self.results.view()[0])
        return self._callback_metrics

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        """What goes to the loggers (``logger=True``), as of now."""
        self._logged_metrics.update(self.results.view()[1])
        return self._logged_metrics

    @property
    def progress_bar_metrics(self) -> dict[str, torch.Tensor]:
        """What the progress bar shows (``prog_bar=True``), as of now."""
        self._progress_bar_metrics.update(self.results.view()[2])
        return self._progress_bar_metrics

    @property
    def on_ray(self) -> bool:
        """Whether stages run on Ray Train workers (``num_workers >= 1`` or a ``scaling_config``)."""
        return self.ray_options.on_ray

    @property
    def model(self) -> torch.nn.Module:
        """The model the loop steps: the LightningModule, or its DDP wrapper under Ray."""
        return self.strategy.model if self.strategy.model is not None else self.lightning_module

    @property
    def current_epoch(self) -> int:
        return self.fit_loop.state.epoch

    @property
    def global_step(self) -> int:
        return self.fit_loop.state.global_step

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
    def training(self) -> bool:
        return self.state.stage == RunningStage.TRAINING

    @property
    def sanity_checking(self) -> bool:
        return self.state.stage == RunningStage.SANITY_CHECKING

    @property
    def validating(self) -> bool:
        return self.state.stage == RunningStage.VALIDATING

    @property
    def testing(self) -> bool:
        return self.state.stage == RunningStage.TESTING

    @property
    def predicting(self) -> bool:
        return self.state.stage == RunningStage.PREDICTING

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
        return self.fit_loop.num_training_batches

    @property
    def num_val_batches(self) -> list[float]:
        return self.fit_loop.num_val_batches

    @property
    def train_dataloader(self) -> Iterable | None:
        return self.fit_loop.train_loader

    @property
    def val_dataloaders(self) -> Any:
        loaders = self.fit_loop.val_loaders
        return loaders[0] if len(loaders) == 1 else loaders or None

    @property
    def estimated_stepping_batches(self) -> int | float:
        """Optimizer steps this fit will take (for schedulers such as OneCycleLR); loads the train data."""
        self.fit_loop.setup_data()
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
        return [cb for cb in self.callbacks if isinstance(cb, Checkpoint)]

    @property
    def progress_bar_callback(self) -> ProgressBar | None:
        return next((cb for cb in self.callbacks if isinstance(cb, ProgressBar)), None)

    @property
    def early_stopping_callback(self) -> EarlyStopping | None:
        return next((cb for cb in self.callbacks if isinstance(cb, EarlyStopping)), None)

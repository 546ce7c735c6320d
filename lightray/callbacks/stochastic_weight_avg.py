"""StochasticWeightAveraging: Lightning's SWA callback (Izmailov et al., "Averaging Weights Leads to Wider Optima and
Better Generalization", UAI 2018) on ``torch.optim.swa_utils.AveragedModel`` and ``SWALR``.

It runs wherever the loop runs: in this process for a local fit, and on each Ray Train worker (every worker keeps
the same average, since DDP keeps the weights equal); rank 0's state comes back to the driver's callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import SWALR, AveragedModel

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError
from lightray.optimization.configure import LRSchedulerConfig, NoOptimizer
from lightray.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer

AvgFn = Callable[[Tensor, Tensor, Tensor], Tensor]
CPU = torch.device("cpu")
# torch's batch norms by their public names (a lazy one becomes one of the first four once it knows its size)
BATCH_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
)  # fmt: skip


class StochasticWeightAveraging(Callback):
    r"""Average the weights of the last epochs (Stochastic Weight Averaging), as Lightning's callback does.

    From epoch ``swa_epoch_start`` the module's learning-rate scheduler is replaced by ``SWALR`` (annealing each
    parameter group's rate to ``swa_lrs`` over ``annealing_epochs`` epochs, ``"cos"`` or ``"linear"``, stepped every
    epoch), and at the start of that epoch and of each later one the current weights (those the previous epoch left)
    are folded into an ``AveragedModel`` kept on ``device`` (``None``: the module's). When training ends the module
    gets the averaged weights. A module with BatchNorm layers runs one epoch more (``max_epochs + 1``): that epoch
    starts from the averaged weights and recomputes the BatchNorm statistics (cumulative averages) over the training
    data without training, as Lightning does.

    Args:
        swa_lrs: the SWA learning rate: a float for every parameter group, or a list of floats (one per group).
        swa_epoch_start: an int: the epoch (from 1) that averaging starts at; a float in [0, 1]: that fraction of
            ``max_epochs``.
        annealing_epochs: epochs of annealing from the current rate to ``swa_lrs`` (default 10).
        annealing_strategy: ``"cos"`` (default) or ``"linear"``.
        avg_fn: ``avg_fn(averaged_param, model_param, num_averaged) -> new averaged_param``; ``None``: the equal
            average.
        device: where the averaged model is kept (default the CPU; ``None``: the module's device).

    One optimizer and at most one scheduler (an ``interval="step"`` one is replaced by the per-epoch ``SWALR`` too).
    Its state (the average, its count, ``SWALR``'s position) is saved in checkpoints under Lightning's keys, and a
    resumed fit continues it.

    It runs wherever the loop runs: in this process for a local fit, or inside each Ray Train worker.
    """

    def __init__(
        self,
        swa_lrs: float | list[float],
        swa_epoch_start: int | float = 0.8,
        annealing_epochs: int = 10,
        annealing_strategy: Literal["cos", "linear"] = "cos",
        avg_fn: AvgFn | None = None,
        device: torch.device | str | None = CPU,
    ) -> None:
        _check_arguments(swa_lrs, swa_epoch_start, annealing_epochs, annealing_strategy, avg_fn, device)
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn: AvgFn = avg_fn or self.avg_fn
        self._device = device
        self.momenta: dict[nn.Module, float | None] = {}  # the BatchNorm momenta while their statistics are redone
        self._average_model: AveragedModel | None = None
        self._model_contains_batch_norm = False
        self._start = 0  # the first averaged epoch (0-based), set at on_fit_start
        self._max_epochs = -1  # the fit's max_epochs before the BatchNorm epoch was added
        self._initialized = False
        self._swa_scheduler: SWALR | None = None
        self._scheduler_state: dict[str, Any] | None = None  # SWALR's state from a checkpoint, until it is rebuilt
        self._pending: tuple[int, dict[str, Tensor] | None] | None = None  # loaded before setup: n_averaged, weights
        self._latest_update_epoch = -1
        self._bn_epoch: dict[str, Any] | None = None  # what the BatchNorm epoch changed in the trainer, to undo

    # ------------------------------------------------------------------ Lightning's public helpers
    @property
    def swa_start(self) -> int:
        """The first epoch (0-based) whose start folds the weights into the average."""
        return self._start

    @property
    def swa_end(self) -> float:
        """The last epoch (0-based) of SWA: ``max_epochs - 1`` (infinite when ``max_epochs=-1``)."""
        return float("inf") if self._max_epochs == -1 else self._max_epochs - 1

    @property
    def n_averaged(self) -> Tensor | None:
        """How many weight sets the average holds (None before a fit; on the driver of a Ray fit, rank 0's count)."""
        if self._average_model is not None:
            return self._average_model.n_averaged
        return None if self._pending is None else torch.tensor(self._pending[0])

    @property
    def average_model(self) -> nn.Module | None:
        """The averaged copy of the module (None before the fit's setup)."""
        return None if self._average_model is None else self._average_model.module

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: nn.Module) -> bool:
        return any(isinstance(module, BATCH_NORMS) for module in pl_module.modules())

    @staticmethod
    def avg_fn(averaged_model_parameter: Tensor, model_parameter: Tensor, num_averaged: Tensor) -> Tensor:
        """The equal average: fold ``model_parameter`` into the mean of ``num_averaged`` earlier values."""
        return averaged_model_parameter + (model_parameter - averaged_model_parameter) / (num_averaged + 1)

    @staticmethod
    def transfer_weights(src_pl_module: nn.Module, dst_pl_module: nn.Module) -> None:
        """Copy the parameters (not the buffers) of ``src_pl_module`` into ``dst_pl_module``."""
        with torch.no_grad():
            for src, dst in zip(src_pl_module.parameters(), dst_pl_module.parameters()):
                dst.copy_(src.to(dst.device))

    def reset_batch_norm_and_save_state(self, pl_module: nn.Module) -> None:
        """Start every BatchNorm's statistics afresh as a cumulative average (``momentum=None``)."""
        self.momenta = {}
        for module in pl_module.modules():
            if isinstance(module, BATCH_NORMS):
                module.reset_running_stats()
                self.momenta[module] = module.momentum
                module.momentum = None

    def reset_momenta(self) -> None:
        for module, momentum in self.momenta.items():
            module.momentum = momentum  # type: ignore[assignment]

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # a copy of the module (without its trainer), made before the loop moves the module, as Lightning does
        self._average_model = AveragedModel(pl_module, device=self._device, avg_fn=self._avg_fn)  # type: ignore[arg-type]
        if self._pending is not None:
            self._load_average(*self._pending)
            self._pending = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if len(trainer.optimizers) != 1 or isinstance(trainer.optimizers[0], NoOptimizer):
            raise MisconfigurationError(
                f"StochasticWeightAveraging works with exactly one optimizer; `configure_optimizers` gave "
                f"{0 if isinstance(trainer.optimizers[0], NoOptimizer) else len(trainer.optimizers)}. Return one "
                "optimizer (and at most one scheduler), or remove the callback."
            )
        if len(trainer.lr_scheduler_configs) > 1:
            raise MisconfigurationError(
                f"StochasticWeightAveraging replaces the learning-rate scheduler, so it works with at most one; "
                f"`configure_optimizers` gave {len(trainer.lr_scheduler_configs)}. Return one scheduler, or none."
            )
        groups = len(trainer.optimizers[0].param_groups)
        if isinstance(self._swa_lrs, list) and len(self._swa_lrs) != groups:
            raise MisconfigurationError(
                f"StochasticWeightAveraging(swa_lrs={self._swa_lrs}) has {len(self._swa_lrs)} learning rates but the "
                f"optimizer has {groups} parameter groups: give one per group, or a single float for all of them."
            )
        start = self._swa_epoch_start
        if isinstance(start, float):
            if trainer.max_epochs == -1:
                raise MisconfigurationError(
                    f"StochasticWeightAveraging(swa_epoch_start={start}) is a fraction of max_epochs, which is -1 "
                    "(no limit). Pass the epoch to start at as an int, e.g. swa_epoch_start=10, or set max_epochs."
                )
            start = int(trainer.max_epochs * start)
        self._start = max(start - 1, 0)
        self._max_epochs = trainer.max_epochs
        self._model_contains_batch_norm = self.pl_module_contains_batch_norm(pl_module)
        if self._model_contains_batch_norm and trainer.max_epochs != -1:
            trainer.max_epochs += 1  # one more epoch, to recompute the BatchNorm statistics of the averaged weights
        if self._scheduler_state is not None:
            # resuming after SWA started: the checkpoint's scheduler state is SWALR's, which on_train_epoch_start
            # rebuilds; keep it from being loaded into the module's own scheduler
            trainer.lr_scheduler_configs.clear()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        in_swa = self.swa_start <= epoch <= self.swa_end
        if in_swa and not self._initialized:
            self._initialized = True
            self._start_averaging(trainer, pl_module)
        if in_swa and epoch > self._latest_update_epoch:
            assert self._average_model is not None
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = epoch
        if self._max_epochs != -1 and epoch == self.swa_end + 1:
            self._start_batch_norm_epoch(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.fit_loop.optimization.skip_backward = False

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        finished = trainer.current_epoch - 1  # the loop has counted the last epoch already
        if self._bn_epoch is not None and finished == self.swa_end + 1:
            self._undo_batch_norm_epoch(trainer)
        elif finished == self.swa_end or self._max_epochs == -1:
            average = self._average_model
            if average is not None and int(average.n_averaged) > 0:
                self.transfer_weights(average.module, pl_module)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        trainer.fit_loop.optimization.skip_backward = False
        self._undo_batch_norm_epoch(trainer)
        if self._model_contains_batch_norm and self._max_epochs != -1 and trainer.max_epochs == self._max_epochs + 1:
            trainer.max_epochs = self._max_epochs  # the fit stopped before the BatchNorm epoch (e.g. early stopping)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Lightning's keys: the average's count, the last epoch folded in, SWALR's state, the averaged weights."""
        average = self._average_model
        scheduler = self._swa_scheduler
        return {
            "n_averaged": 0 if average is None else int(average.n_averaged),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": self._scheduler_state if scheduler is None else scheduler.state_dict(),
            "average_model_state": None
            if average is None
            else {k: v.detach().cpu() for k, v in average.module.state_dict().items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._scheduler_state = state_dict["scheduler_state"]
        n_averaged, weights = state_dict["n_averaged"], state_dict["average_model_state"]
        if self._average_model is None:
            self._pending = (n_averaged, weights)  # applied at setup, when the average exists
        else:
            self._load_average(n_averaged, weights)

    # ------------------------------------------------------------------ internals
    def _load_average(self, n_averaged: int, weights: dict[str, Tensor] | None) -> None:
        assert self._average_model is not None
        if weights is not None:
            self._average_model.module.load_state_dict(weights)
        self._average_model.n_averaged.fill_(n_averaged)

    def _start_averaging(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Move the average where it is kept, and put SWALR in place of the module's scheduler."""
        assert self._average_model is not None
        self._average_model.to(self._device or pl_module.device)
        optimizer = trainer.optimizers[0]
        swa_lrs = self._swa_lrs
        if isinstance(swa_lrs, float):
            swa_lrs = [swa_lrs] * len(optimizer.param_groups)
        for lr, group in zip(swa_lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        self._swa_scheduler = SWALR(
            optimizer,
            swa_lr=swa_lrs,  # type: ignore[arg-type]
            anneal_epochs=self._annealing_epochs,
            anneal_strategy=self._annealing_strategy,
            last_epoch=trainer.max_epochs if self._annealing_strategy == "cos" else -1,
        )
        if self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        elif trainer.current_epoch != self.swa_start:
            rank_zero_warn(
                "SWA is initializing after swa_start without any checkpoint data. "
                "This may be caused by loading a checkpoint from an older version of PyTorch Lightning."
            )
        swa_config = LRSchedulerConfig(self._swa_scheduler)
        if trainer.lr_scheduler_configs:
            config = trainer.lr_scheduler_configs[0]
            if config.interval != "epoch" or config.frequency != 1:
                rank_zero_warn(f"SWA is currently only supported every epoch. Found {config}")
            rank_zero_info(f"Swapping scheduler `{type(config.scheduler).__name__}` for `SWALR`")
            trainer.lr_scheduler_configs[0] = swa_config
        else:
            trainer.lr_scheduler_configs.append(swa_config)

    def _start_batch_norm_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The extra epoch of a module with BatchNorm: the averaged weights, fresh statistics, and no training.

        As in Lightning, it runs neither zero_grad nor backward, and its only optimizer step, at its last batch,
        sees the gradients left from before the epoch.
        """
        assert self._average_model is not None
        self.transfer_weights(self._average_model.module, pl_module)
        self.reset_batch_norm_and_save_state(pl_module)
        batches = trainer.num_training_batches
        if batches == float("inf"):
            raise MisconfigurationError(
                "StochasticWeightAveraging recomputes BatchNorm statistics in one more epoch, which needs a known "
                "number of training batches: give the training dataloader a length, or set "
                "`limit_train_batches` to an int."
            )
        self._bn_epoch = {"accumulate": trainer.accumulate_grad_batches}
        trainer.accumulate_grad_batches = int(batches) + 1  # no optimizer step before the last batch
        trainer.fit_loop.optimization.skip_backward = True

    def _undo_batch_norm_epoch(self, trainer: Trainer) -> None:
        if self._bn_epoch is None:
            return
        trainer.accumulate_grad_batches = self._bn_epoch["accumulate"]
        if trainer.max_epochs == self._max_epochs + 1:
            trainer.max_epochs = self._max_epochs
        self.reset_momenta()
        self._bn_epoch = None


def _check_arguments(
    swa_lrs: Any, swa_epoch_start: Any, annealing_epochs: Any, annealing_strategy: Any, avg_fn: Any, device: Any
) -> None:
    """Lightning's checks (and SWALR's, which Lightning leaves to the start of SWA), with the fix in each message."""
    start_ok = (
        isinstance(swa_epoch_start, int) and swa_epoch_start >= 1 and not isinstance(swa_epoch_start, bool)
    ) or (isinstance(swa_epoch_start, float) and 0 <= swa_epoch_start <= 1)
    if not start_ok:
        raise MisconfigurationError(
            f"StochasticWeightAveraging(swa_epoch_start={swa_epoch_start!r}): swa_epoch_start should be a >0 integer "
            "or a float between 0 and 1: the epoch to start averaging at (from 1), or a fraction of max_epochs "
            "such as 0.8."
        )
    lrs = swa_lrs if isinstance(swa_lrs, list) else [swa_lrs]
    if not isinstance(swa_lrs, float | list) or not lrs or not all(isinstance(lr, float) and lr > 0 for lr in lrs):
        raise MisconfigurationError(
            f"StochasticWeightAveraging(swa_lrs={swa_lrs!r}): the `swa_lrs` should be a positive float, or a list "
            "of positive floats (one per parameter group), e.g. swa_lrs=1e-2 (write 1.0, not 1)."
        )
    if not isinstance(annealing_epochs, int) or isinstance(annealing_epochs, bool) or annealing_epochs < 0:
        raise MisconfigurationError(
            f"StochasticWeightAveraging(annealing_epochs={annealing_epochs!r}): the number of annealing epochs "
            "should be an int >= 0, e.g. annealing_epochs=10."
        )
    if annealing_strategy not in ("cos", "linear"):
        raise MisconfigurationError(
            f"StochasticWeightAveraging(annealing_strategy={annealing_strategy!r}): use 'cos' or 'linear'."
        )
    if avg_fn is not None and not callable(avg_fn):
        raise MisconfigurationError(
            f"StochasticWeightAveraging(avg_fn={avg_fn!r}): the `avg_fn` should be callable, "
            "avg_fn(averaged_param, model_param, num_averaged) -> new averaged_param; or None for the equal average."
        )
    if device is not None and not isinstance(device, torch.device | str):
        raise MisconfigurationError(
            f"StochasticWeightAveraging(device={device!r}): device is expected to be a torch.device or a str, "
            "e.g. 'cpu' or 'cuda:0'; or None to keep the average on the module's device."
        )

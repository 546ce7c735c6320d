"""The learning-rate range test (Lightning's ``lr_find``): train a few steps while the learning rate grows from
``min_lr`` to ``max_lr``, record the smoothed loss, suggest the rate where it falls fastest; then put the model,
optimizer and loop back as they were.

Runs where the loop runs (in-process, or on each Ray Train worker, where rank 0's results are shared).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError
from lightray.optimization.configure import LRSchedulerConfig
from lightray.seed import isolated_rng
from lightray.tuner.trial import Snapshot, holders_of, run_training, set_attribute, swapped_settings
from lightray.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer

log = logging.getLogger(__name__)


class LRFinder:
    """What ``Tuner.lr_find`` returns: ``results["lr"]`` and ``results["loss"]`` (the smoothed loss at each rate),
    ``suggestion()`` and ``plot()``."""

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int) -> None:
        self.mode, self.lr_min, self.lr_max, self.num_training = mode, lr_min, lr_max, num_training
        self.results: dict[str, list[float]] = {}
        self.optimal_idx: int | None = None

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The rate where the loss falls fastest (the most negative gradient of loss over rate), leaving out the
        first ``skip_begin`` and last ``skip_end`` points; None when fewer than two finite points remain."""
        lrs_all, losses_all = self.results["lr"], self.results["loss"]
        indices = list(range(len(losses_all)))[skip_begin:-skip_end]
        finite = [i for i in indices if torch.isfinite(torch.tensor(losses_all[i]))]
        if len(finite) < 2:
            log.error(
                "Failed to compute suggestion for learning rate because there are not enough points. Increase the "
                "loop iteration limits or the size of your dataset/dataloader."
            )
            self.optimal_idx = None
            return None
        losses = torch.tensor([losses_all[i] for i in finite])
        lrs = torch.tensor([lrs_all[i] for i in finite])
        gradients = torch.gradient(losses, spacing=[lrs])[0]
        self.optimal_idx = finite[int(torch.argmin(gradients))]
        return lrs_all[self.optimal_idx]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Figure | None:
        """Loss over learning rate (log scale in exponential mode), the suggestion as a red dot; needs matplotlib
        (the ``viz`` extra)."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise MisconfigurationError(
                "LRFinder.plot needs matplotlib: pip install 'lightray[viz]' (or matplotlib)."
            ) from err
        figure = None
        if ax is None:
            figure, ax = plt.subplots()
        ax.plot(self.results["lr"], self.results["loss"])
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest and self.suggestion() is not None and self.optimal_idx is not None:
            index = self.optimal_idx
            ax.plot(self.results["lr"][index], self.results["loss"][index], markersize=10, marker="o", color="red")
        if show:
            plt.show()
        return figure if figure is not None else ax.figure


class RangeSchedule(LRScheduler):
    """The learning rate of step ``i``: from each group's start to ``end_lr`` over ``num_iter`` steps, linearly or
    exponentially; the first step keeps the start."""

    def __init__(self, optimizer: torch.optim.Optimizer, end_lr: float, num_iter: int, mode: str) -> None:
        self.end_lr, self.num_iter, self.mode = end_lr, num_iter, mode
        self.lr: list[float | torch.Tensor] = []
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        fraction = (self.last_epoch + 1) / self.num_iter
        rates: list[float | torch.Tensor]
        if self.last_epoch <= 0:
            rates = list(self.base_lrs)
        elif self.mode == "linear":
            rates = [base + fraction * (self.end_lr - base) for base in self.base_lrs]
        else:
            rates = [base * (self.end_lr / base) ** fraction for base in self.base_lrs]
        self.lr = rates
        return rates


class LossRecorder(Callback):
    """The search's only callback: the rate before each optimizer step, the smoothed loss after it; stops the
    search when the loss exceeds ``early_stop_threshold`` times the best so far."""

    def __init__(self, num_training: int, early_stop_threshold: float | None, beta: float = 0.98) -> None:
        self.num_training, self.early_stop_threshold, self.beta = num_training, early_stop_threshold, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.average = self.best = 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0:
            scheduler = trainer.lr_scheduler_configs[0].scheduler
            assert isinstance(scheduler, RangeSchedule)
            self.lrs.append(float(scheduler.lr[0]))

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return
        if not outputs:
            self.losses.append(float("nan"))  # a skipped step: kept out of the suggestion
            return
        loss = float((outputs if isinstance(outputs, torch.Tensor) else outputs["loss"]).item())
        step = trainer.global_step
        self.average = self.beta * self.average + (1 - self.beta) * loss
        smoothed = self.average / (1 - self.beta ** (step + 1))
        threshold = self.early_stop_threshold
        if threshold is not None and step > 1 and smoothed > threshold * self.best:
            trainer.should_stop = True
        trainer.should_stop = trainer.strategy.broadcast(trainer.should_stop)
        if smoothed < self.best or step == 1:
            self.best = smoothed
        self.losses.append(smoothed)


def lr_attribute(module: LightningModule, attr_name: str) -> str:
    """The module's learning-rate attribute: ``attr_name``, else ``lr`` or ``learning_rate``."""
    if attr_name:
        if not holders_of(module, attr_name):
            raise MisconfigurationError(
                f"The attribute name for the learning rate was set to {attr_name}, but could not find this as a "
                "field in `model` or `model.hparams`."
            )
        return attr_name
    for name in ("lr", "learning_rate"):
        if holders_of(module, name):
            return name
    raise MisconfigurationError(
        "When using the learning rate finder, either `model` or `model.hparams` should have one of these fields: "
        "('lr', 'learning_rate'). If your model has a different name for the learning rate, set it with "
        "`.lr_find(attr_name=...)`."
    )


def lr_find(
    trainer: Trainer,
    module: LightningModule,
    min_lr: float = 1e-8,
    max_lr: float = 1.0,
    num_training: int = 100,
    mode: str = "exponential",
    early_stop_threshold: float | None = 4.0,
    update_attr: bool = False,
    attr_name: str = "",
) -> LRFinder | None:
    """The range test, from a fit's ``on_fit_start`` (its optimizers exist): the random state, weights, optimizer,
    schedulers and loop position are as before it afterwards; with ``update_attr`` the suggestion is set on the
    module's learning-rate attribute and the optimizer."""
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping learning rate finder since `fast_dev_run` is enabled.")
        return None
    if update_attr:
        attr_name = lr_attribute(module, attr_name)
    if len(trainer.optimizers) != 1:
        raise MisconfigurationError(
            f"`model.configure_optimizers()` returned {len(trainer.optimizers)}, but learning rate finder only works "
            "with single optimizer"
        )
    finder = LRFinder(mode, min_lr, max_lr, num_training)
    recorder = LossRecorder(num_training, early_stop_threshold)
    with isolated_rng():
        snapshot = Snapshot(trainer)
        start_step, saved_schedulers = trainer.global_step, trainer.lr_scheduler_configs
        optimizer = trainer.optimizers[0]
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = min_lr
        trainer.lr_scheduler_configs = [
            LRSchedulerConfig(RangeSchedule(optimizer, max_lr, num_training, mode), interval="step")
        ]
        try:
            with swapped_settings(trainer, [recorder], max_steps=start_step + num_training,
                                  limit_val_batches=num_training):  # fmt: skip
                run_training(trainer, trainer.fit_loop.state)
                steps = trainer.global_step
            if steps != start_step + num_training:
                rank_zero_info(f"LR finder stopped early after {steps} steps due to diverging loss.")
        finally:
            trainer.lr_scheduler_configs = saved_schedulers
            snapshot.restore()
            # the fit that goes on loads its data here, drawing its first epoch's order from the random state the
            # search left (as Lightning sets its data up again before putting the random state back)
            trainer.fit_loop.setup_data()
        finder.results = trainer.strategy.broadcast({"lr": recorder.lrs, "loss": recorder.losses})
    if update_attr:
        lr = finder.suggestion()
        if lr is not None:
            set_attribute(module, attr_name, lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rank_zero_info(f"Learning rate set to {lr}")
    return finder

"""``BatchSizeFinder``: Lightning's batch-size search as a callback, run when fit starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError, TunerExit
from lightray.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class BatchSizeFinder(Callback):
    """Finds the largest batch size that fits in memory in ``on_fit_start`` (see
    ``lightray.tuner.Tuner.scale_batch_size``), then trains with it. In-process only, as Lightning refuses it
    with distributed strategies. ``optimal_batch_size`` holds the size found."""

    SUPPORTED_MODES = ("power", "binsearch")

    def __init__(
        self,
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
        margin: float = 0.05,
        max_val: int = 8192,
    ) -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise MisconfigurationError(f"BatchSizeFinder(mode={mode!r}): use one of {self.SUPPORTED_MODES}.")
        if not 0.0 <= margin < 1.0:
            raise MisconfigurationError(f"BatchSizeFinder(margin={margin}): `margin` should be between 0 and 1.")
        self.mode, self.steps_per_trial, self.init_val, self.max_trials = mode, steps_per_trial, init_val, max_trials
        self.batch_arg_name, self.margin, self.max_val = batch_arg_name, margin, max_val
        self.early_exit = False  # set by the Tuner: the fit that carries the search ends after it
        self.optimal_batch_size: int | None = init_val

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        from lightray.tuner.trial import check_single_process, holders_of

        check_single_process(trainer, "The batch size finder")
        if stage != "fit":
            raise MisconfigurationError(
                f"BatchSizeFinder runs when fit starts; lightray does not search batch sizes for {stage!r} yet."
            )
        if "train" in trainer.data_sources.given:
            raise MisconfigurationError(
                "The Batch size finder cannot be used with dataloaders passed directly to `.fit()`. Please disable "
                "the feature or incorporate the dataloader into your LightningModule or LightningDataModule."
            )
        holders = holders_of(pl_module, self.batch_arg_name)
        if not holders:
            raise MisconfigurationError(
                f"Field {self.batch_arg_name} not found in `model`, `datamodule`, nor their `hparams` attributes."
            )
        if pl_module in holders and pl_module.hparams in holders:
            rank_zero_warn(
                f"Field `model.{self.batch_arg_name}` and `model.hparams.{self.batch_arg_name}` are mutually "
                f"exclusive! `model.{self.batch_arg_name}` will be used as the initial batch size for scaling. If "
                "this is not the intended behavior, please remove either one."
            )

    def scale_batch_size(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from lightray.tuner.batch_size_scaling import scale_batch_size

        self.optimal_batch_size = scale_batch_size(
            trainer, self.mode, self.steps_per_trial, self.init_val, self.max_trials, self.batch_arg_name,
            self.margin, self.max_val,
        )  # fmt: skip
        if self.early_exit:
            raise TunerExit

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.scale_batch_size(trainer, pl_module)

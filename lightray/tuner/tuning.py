"""``Tuner``: Lightning's entry point for the learning-rate range test and the batch-size search."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightray.callbacks.batch_size_finder import BatchSizeFinder
from lightray.callbacks.lr_finder import LearningRateFinder
from lightray.core.datamodule import LightningDataModule
from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer
    from lightray.tuner.lr_finder import LRFinder

METHODS = ("fit", "validate", "test", "predict")


class Tuner:
    """``Tuner(trainer).lr_find(model)`` / ``.scale_batch_size(model)``, as in Lightning: each runs a fit that
    only searches (the model, optimizer and loop are put back), then returns the result; the next
    ``trainer.fit`` trains. Called on the driver; the search runs in this process (a Trainer on Ray refuses)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def lr_find(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        method: str = "fit",
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> LRFinder | None:
        """The learning-rate range test; with ``update_attr`` the suggestion is set on ``model.lr`` (or
        ``learning_rate``, or ``attr_name``) for the next fit."""
        if method != "fit":
            raise MisconfigurationError("method='fit' is the only valid configuration to run lr finder.")
        _check_arguments(train_dataloaders, val_dataloaders, dataloaders, method)
        self._refuse_ray("Tuner.lr_find")
        if any(isinstance(cb, LearningRateFinder) for cb in self.trainer.callbacks):
            raise MisconfigurationError(
                "Trainer is already configured with a `LearningRateFinder` callback. Please remove it if you want "
                "to use the Tuner."
            )
        finder = LearningRateFinder(min_lr, max_lr, num_training, mode, early_stop_threshold, update_attr, attr_name)
        self._search(finder, model, train_dataloaders, val_dataloaders, datamodule)
        return finder.optimal_lr

    def scale_batch_size(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        method: str = "fit",
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
        margin: float = 0.05,
        max_val: int = 8192,
    ) -> int | None:
        """The largest batch size that trains without running out of memory (``mode="power"`` doubles it,
        ``"binsearch"`` then narrows it down); left in ``batch_arg_name`` for the next fit and returned."""
        _check_arguments(train_dataloaders, val_dataloaders, dataloaders, method)
        if method != "fit":
            raise MisconfigurationError(
                f"scale_batch_size(method={method!r}): lightray searches batch sizes for fit only; the size found "
                "there serves validate/test/predict too."
            )
        self._refuse_ray("Tuner.scale_batch_size")
        if any(isinstance(cb, BatchSizeFinder) for cb in self.trainer.callbacks):
            raise MisconfigurationError(
                "Trainer is already configured with a `BatchSizeFinder` callback. Please remove it if you want to "
                "use the Tuner."
            )
        finder = BatchSizeFinder(mode, steps_per_trial, init_val, max_trials, batch_arg_name, margin, max_val)
        self._search(finder, model, train_dataloaders, val_dataloaders, datamodule)
        return finder.optimal_batch_size

    def _search(self, finder: LearningRateFinder | BatchSizeFinder, model: LightningModule, train: Any, val: Any,
                datamodule: LightningDataModule | None) -> None:  # fmt: skip
        finder.early_exit = True
        trainer = self.trainer
        trainer.callbacks = [finder, *trainer.callbacks]
        try:
            trainer.fit(model, train, val, datamodule)
        finally:
            trainer.callbacks = [cb for cb in trainer.callbacks if cb is not finder]

    def _refuse_ray(self, what: str) -> None:
        if self.trainer.on_ray:
            raise MisconfigurationError(
                f"{what} runs in this process and returns its result here: call it with a Trainer without "
                "`num_workers` (same model and data), then train on Ray with the value it found. (The "
                "`LearningRateFinder` callback does run on Ray workers, with rank 0's results on every rank.)"
            )


def _check_arguments(train: Any, val: Any, dataloaders: Any, method: str) -> None:
    if method not in METHODS:
        raise MisconfigurationError(f"method {method!r} is invalid. Should be one of {METHODS}.")
    if method == "fit" and dataloaders is not None:
        raise MisconfigurationError(
            f"In tuner with method={method!r}, `dataloaders` argument should be None, please consider setting "
            "`train_dataloaders` and `val_dataloaders` instead."
        )
    if method != "fit" and (train is not None or val is not None):
        raise MisconfigurationError(
            f"In tuner with `method`={method!r}, `train_dataloaders` and `val_dataloaders` arguments should be None, "
            "please consider setting `dataloaders` instead."
        )

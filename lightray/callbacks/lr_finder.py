"""``LearningRateFinder``: Lightning's learning-rate range test as a callback, run when fit starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError, TunerExit

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer
    from lightray.tuner.lr_finder import LRFinder


class LearningRateFinder(Callback):
    """Runs the range test in ``on_fit_start`` (see ``lightray.tuner.Tuner.lr_find``) and, with ``update_attr``,
    trains with the suggested rate. Runs where the loop runs: in-process, or on each Ray Train worker (every rank
    uses rank 0's results). ``optimal_lr`` holds the ``LRFinder`` afterwards."""

    SUPPORTED_MODES = ("linear", "exponential")

    def __init__(
        self,
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training_steps: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise MisconfigurationError(f"LearningRateFinder(mode={mode!r}): use one of {self.SUPPORTED_MODES}.")
        self.min_lr, self.max_lr, self.num_training_steps = min_lr, max_lr, num_training_steps
        self.mode, self.early_stop_threshold = mode, early_stop_threshold
        self.update_attr, self.attr_name = update_attr, attr_name
        self.early_exit = False  # set by the Tuner: the fit that carries the search ends after it
        self.optimal_lr: LRFinder | None = None

    def lr_find(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from lightray.tuner.lr_finder import lr_find

        self.optimal_lr = lr_find(
            trainer, pl_module, min_lr=self.min_lr, max_lr=self.max_lr, num_training=self.num_training_steps,
            mode=self.mode, early_stop_threshold=self.early_stop_threshold, update_attr=self.update_attr,
            attr_name=self.attr_name,
        )  # fmt: skip
        if self.early_exit:
            raise TunerExit

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.lr_find(trainer, pl_module)

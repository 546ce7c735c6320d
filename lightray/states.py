"""What a Trainer is doing: Lightning's ``TrainerFn``, ``RunningStage`` and ``TrainerStatus``, and loop phases.

The enums are ``str`` subclasses, so ``trainer.state.fn == "fit"`` holds as in Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class _StrEnum(str, Enum):
    def __str__(self) -> str:  # "fit", as Lightning prints it, not "TrainerFn.FITTING"
        return str(self.value)


class TrainerFn(_StrEnum):
    """The entry point that is running: ``Trainer.fit``, ``validate``, ``test`` or ``predict``."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class RunningStage(_StrEnum):
    """The pass the loop is in: training, the sanity check, validation, test or predict."""

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"


class TrainerStatus(_StrEnum):
    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


@dataclass
class TrainerState:
    """``trainer.state``: the entry point, the running pass and the status."""

    status: TrainerStatus = TrainerStatus.INITIALIZING
    fn: TrainerFn | None = None
    stage: RunningStage | None = None


class LoopPhase(_StrEnum):
    """Where the fit loop is inside a batch or epoch; saved in checkpoints (as its value) so a checkpoint
    taken inside a hook resumes right after it."""

    BEFORE_BATCH = "before_batch"
    AFTER_BATCH = "after_batch"  # in on_train_batch_end
    AFTER_VALIDATION = "after_validation"
    EPOCH_END = "epoch_end"
    FIT_END = "fit_end"

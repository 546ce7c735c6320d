"""Callbacks: code that hooks into the loop from outside the module."""

from lightray.callbacks.callback import Callback
from lightray.callbacks.checkpoint import Checkpoint
from lightray.callbacks.early_stopping import EarlyStopping
from lightray.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
from lightray.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
from lightray.callbacks.lr_monitor import LearningRateMonitor
from lightray.callbacks.model_checkpoint import ModelCheckpoint
from lightray.callbacks.model_summary import ModelSummary
from lightray.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from lightray.callbacks.prediction_writer import BasePredictionWriter
from lightray.callbacks.progress import LineRenderer, ProgressBar, TQDMProgressBar, TqdmRenderer
from lightray.callbacks.timer import Timer

__all__ = [
    "BackboneFinetuning",
    "BaseFinetuning",
    "BasePredictionWriter",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "GradientAccumulationScheduler",
    "LearningRateMonitor",
    "LineRenderer",
    "ModelCheckpoint",
    "ModelSummary",
    "OnExceptionCheckpoint",
    "ProgressBar",
    "TQDMProgressBar",
    "Timer",
    "TqdmRenderer",
]

"""Callbacks: code that hooks into the loop from outside the module."""

from lightray.callbacks.batch_size_finder import BatchSizeFinder
from lightray.callbacks.callback import Callback
from lightray.callbacks.checkpoint import Checkpoint
from lightray.callbacks.device_stats_monitor import DeviceStatsMonitor
from lightray.callbacks.early_stopping import EarlyStopping
from lightray.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
from lightray.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
from lightray.callbacks.lr_finder import LearningRateFinder
from lightray.callbacks.lr_monitor import LearningRateMonitor
from lightray.callbacks.model_checkpoint import ModelCheckpoint
from lightray.callbacks.model_summary import ModelSummary
from lightray.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from lightray.callbacks.prediction_writer import BasePredictionWriter
from lightray.callbacks.progress import (
    LineRenderer,
    ProgressBar,
    RichProgressBar,
    RichProgressBarTheme,
    TQDMProgressBar,
    TqdmRenderer,
)
from lightray.callbacks.rich_model_summary import RichModelSummary
from lightray.callbacks.stochastic_weight_avg import StochasticWeightAveraging
from lightray.callbacks.timer import Timer

__all__ = [
    "BackboneFinetuning",
    "BaseFinetuning",
    "BasePredictionWriter",
    "BatchSizeFinder",
    "Callback",
    "Checkpoint",
    "DeviceStatsMonitor",
    "EarlyStopping",
    "GradientAccumulationScheduler",
    "LearningRateFinder",
    "LearningRateMonitor",
    "LineRenderer",
    "ModelCheckpoint",
    "ModelSummary",
    "OnExceptionCheckpoint",
    "ProgressBar",
    "RichModelSummary",
    "RichProgressBar",
    "RichProgressBarTheme",
    "StochasticWeightAveraging",
    "TQDMProgressBar",
    "Timer",
    "TqdmRenderer",
]

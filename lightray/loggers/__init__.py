"""Loggers: where logged metrics and hyperparameters are written."""

from lightray.loggers.csv import CSVLogger
from lightray.loggers.logger import Logger
from lightray.loggers.mlflow import MLFlowLogger
from lightray.loggers.tensorboard import TensorBoardLogger

__all__ = ["CSVLogger", "Logger", "MLFlowLogger", "TensorBoardLogger"]

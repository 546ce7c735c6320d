"""Loggers: where logged metrics and hyperparameters are written."""

from lightray.loggers.comet import CometLogger
from lightray.loggers.csv import CSVLogger
from lightray.loggers.logger import Logger
from lightray.loggers.mlflow import MLFlowLogger
from lightray.loggers.tensorboard import TensorBoardLogger
from lightray.loggers.wandb import WandbLogger

__all__ = ["CSVLogger", "CometLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger"]

"""Loggers: where logged metrics and hyperparameters are written."""

from lightray.loggers.csv import CSVLogger
from lightray.loggers.logger import Logger

__all__ = ["CSVLogger", "Logger"]

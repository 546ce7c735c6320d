"""lightray: PyTorch Lightning's API with one training loop that runs locally or on Ray Train workers."""

import logging as _logging

from lightray import callbacks, loggers, profilers, strategies
from lightray.callbacks.callback import Callback
from lightray.core.datamodule import LightningDataModule
from lightray.core.module import LightningModule
from lightray.errors import MisconfigurationError
from lightray.seed import seed_everything
from lightray.trainer import Trainer

__version__ = "0.1.0"

# What the Trainer reports at INFO ("`Trainer.fit` stopped: ..."), shown on stderr as Lightning shows its own,
# unless the program configured logging itself.
_log = _logging.getLogger(__name__)
_log.setLevel(_logging.INFO)
if not _logging.getLogger().hasHandlers():
    _log.addHandler(_logging.StreamHandler())
    _log.propagate = False

__all__ = [
    "Callback",
    "LightningDataModule",
    "LightningModule",
    "MisconfigurationError",
    "Trainer",
    "__version__",
    "callbacks",
    "loggers",
    "profilers",
    "seed_everything",
    "strategies",
]

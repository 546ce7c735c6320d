"""lightray: PyTorch Lightning's API with one training loop that runs locally or on Ray Train workers."""

from lightray.callbacks.callback import Callback
from lightray.datamodule import LightningDataModule
from lightray.errors import MisconfigurationError
from lightray.module import LightningModule
from lightray.seed import seed_everything
from lightray.trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "LightningDataModule",
    "LightningModule",
    "MisconfigurationError",
    "Trainer",
    "__version__",
    "seed_everything",
]

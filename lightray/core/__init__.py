"""The module and the data module, at Lightning's import paths (``lightning.pytorch.core`` -> ``lightray.core``)."""

from lightray.core.datamodule import LightningDataModule
from lightray.core.module import LightningModule

__all__ = ["LightningDataModule", "LightningModule"]

"""Lightning's demo classes at their import path (``lightning.pytorch.demos`` -> ``lightray.demos``)."""

from lightray.demos.boring_classes import BoringDataModule, BoringModel, DemoModel

__all__ = ["BoringDataModule", "BoringModel", "DemoModel"]

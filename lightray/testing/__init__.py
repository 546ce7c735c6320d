"""Helpers for testing code built on lightray: tiny models and data sets."""

from lightray.testing.boring import BoringDataModule, BoringModel, RandomDataset

__all__ = ["BoringDataModule", "BoringModel", "RandomDataset"]

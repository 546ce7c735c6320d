"""Tiny modules and data for tests (lightray's own, and users')."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightray.core.datamodule import LightningDataModule
from lightray.core.module import LightningModule


class RandomDataset(Dataset):
    """``length`` random vectors of ``size`` features, fixed by ``seed``."""

    def __init__(self, size: int = 32, length: int = 64, seed: int = 0) -> None:
        self.data = torch.randn(length, size, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index]


class BoringModel(LightningModule):
    """One linear layer whose loss is the mean of its output; enough to exercise every hook."""

    def __init__(self, size: int = 32, length: int = 64, batch_size: int = 2) -> None:
        super().__init__()
        self.layer = nn.Linear(size, 2)
        self.size, self.length, self.batch_size = size, length, batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        return self(batch).sum() / batch.shape[0]

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = self.loss(batch)
        self.log("train_loss", loss)
        return {"loss": loss}

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        loss = self.loss(batch)
        self.log("val_loss", loss)
        return {"x": loss}

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        loss = self.loss(batch)
        self.log("test_loss", loss)
        return {"y": loss}

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.layer.parameters(), lr=0.1)

    def _loader(self, seed: int) -> DataLoader:
        return DataLoader(RandomDataset(self.size, self.length, seed), batch_size=self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(1)

    def test_dataloader(self) -> DataLoader:
        return self._loader(2)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(3)


class BoringDataModule(LightningDataModule):
    """Random train/val/test/predict splits of 64 vectors each."""

    def __init__(self, size: int = 32, batch_size: int = 2) -> None:
        super().__init__()
        self.size, self.batch_size = size, batch_size

    def setup(self, stage: str) -> None:
        self.sets = {
            name: RandomDataset(self.size, 64, seed) for seed, name in enumerate(["train", "val", "test", "predict"])
        }

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["train"], batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["val"], batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["test"], batch_size=self.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.sets["predict"], batch_size=self.batch_size)

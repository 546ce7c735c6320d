"""A tiny module and data module for the `lightray` command's tests (named by class path, shipped to Ray jobs)."""

from __future__ import annotations

import json
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray as pl


class TinyModel(pl.LightningModule):
    """A 4-feature regression; ``step_sleep`` slows each training step so a job can be stopped mid-run."""

    def __init__(self, lr: float = 0.1, hidden: int = 8, step_sleep: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def on_train_start(self) -> None:
        if self.trainer.is_global_zero:
            print(f"train starts at global_step={self.global_step}", flush=True)

    def training_step(self, batch, batch_idx):
        time.sleep(self.hparams.step_sleep)
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self.net(x), y))

    def predict_step(self, batch, batch_idx):
        return self.net(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TinyData(pl.LightningDataModule):
    def __init__(self, n: int = 32, batch_size: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)
        self.batch_size = batch_size

    def _loader(self, shuffle: bool = False) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self):
        return self._loader(shuffle=True)

    def val_dataloader(self):
        return self._loader()

    def test_dataloader(self):
        return self._loader()

    def predict_dataloader(self):
        return self._loader()


class StartRecord(pl.Callback):
    """On rank 0, appends a JSON line per training start: the step it starts at, the world size and the lr."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            row = {"step": trainer.global_step, "world_size": trainer.world_size, "hparams_lr": pl_module.hparams.lr,
                   "optimizer_lr": trainer.optimizers[0].param_groups[0]["lr"]}  # fmt: skip
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")

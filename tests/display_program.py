"""A small run for the terminal tests: 24 slow-ish steps per epoch, a print and a warning from the module.

Run as a script: ``python display_program.py <root> <num_workers>``; its last line is ``RESULT <val_loss>``.
"""

from __future__ import annotations

import sys
import time
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray as pl


class SlowRegression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 1)

    def on_fit_start(self) -> None:
        print(f"hello from rank {self.global_rank}")
        warnings.warn(f"a warning from rank {self.global_rank}", stacklevel=1)

    def training_step(self, batch, batch_idx):
        time.sleep(0.06)  # 24 steps take ~1.5 s: long enough for a live display to show several updates
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader(n: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)), batch_size=2)


if __name__ == "__main__":
    root, workers = sys.argv[1], int(sys.argv[2])
    trainer = pl.Trainer(max_epochs=2, num_workers=workers, default_root_dir=root, log_every_n_steps=5)
    trainer.fit(SlowRegression(), loader(48 * max(workers, 1)), loader(8))
    print(f"RESULT {float(trainer.callback_metrics['val_loss']):.4f}")

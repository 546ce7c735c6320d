"""The demo: a small CNN on scikit-learn's handwritten digits (8x8 images, shipped with scikit-learn).

    python examples/digits.py                   # trains a few epochs on the CPU, prints validation accuracy
    python examples/digits.py --num-workers 2   # the same program on 2 Ray Train workers (DDP)
    python examples/digits.py --fast-dev-run    # one batch of each stage, as the tests run it

The program is plain Lightning code: only the import differs.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

import lightray as pl


class DigitsData(pl.LightningDataModule):
    """scikit-learn's 1,797 digit images, split 80/20 into train and validation sets."""

    def __init__(self, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.seed = seed

    def setup(self, stage: str) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        dataset = TensorDataset(images, labels)
        n_val = len(dataset) // 5
        generator = torch.Generator().manual_seed(self.seed)
        self.train_set, self.val_set = random_split(dataset, [len(dataset) - n_val, n_val], generator=generator)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)


class DigitsCNN(pl.LightningModule):
    def __init__(self, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y), prog_bar=True)
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--fast-dev-run", action="store_true")
    parser.add_argument("--default-root-dir", default=None)
    parser.add_argument("--num-workers", type=int, default=0, help="Ray Train workers (0: train in this process)")
    args = parser.parse_args(argv)

    pl.seed_everything(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        fast_dev_run=args.fast_dev_run,
        default_root_dir=args.default_root_dir,
        num_workers=args.num_workers,
        log_every_n_steps=5,  # an epoch is 23 steps (12 per worker on 2 workers): log a few points per epoch
    )
    model = DigitsCNN(lr=args.lr)
    trainer.fit(model, datamodule=DigitsData(batch_size=args.batch_size))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    print(f"validation accuracy: {metrics.get('val_acc', float('nan')):.4f}")
    return metrics


if __name__ == "__main__":
    main()

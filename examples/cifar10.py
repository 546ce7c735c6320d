"""The seed program: ResNet18 from torchvision on CIFAR-10, as in the post lightray started from.

    python examples/cifar10.py                          # CIFAR-10 (downloaded to ./data if absent)
    python examples/cifar10.py --num-workers 4 --use-gpu  # 4 Ray Train workers with a GPU each
    python examples/cifar10.py --synthetic              # FakeData with CIFAR-10's shapes: no download

The model and the training step are the post's; only the import changed, plus the arguments above.
"""

from __future__ import annotations

import argparse
import os

import torch
import torchvision

import lightray as pl


class LitCIFAR10(pl.LightningModule):
    def __init__(self, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.model = torchvision.models.resnet18(weights=None, num_classes=10)
        self.loss = torch.nn.CrossEntropyLoss()

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        loss = self.loss(logits, y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr)


def make_dataset(data_dir: str, synthetic: bool, size: int | None):
    transform = torchvision.transforms.ToTensor()
    if synthetic:
        return torchvision.datasets.FakeData(size or 512, (3, 32, 32), 10, transform=transform)
    present = os.path.isdir(os.path.join(data_dir, "cifar-10-batches-py"))
    dataset = torchvision.datasets.CIFAR10(data_dir, train=True, download=not present, transform=transform)
    return torch.utils.data.Subset(dataset, range(size)) if size else dataset


def main(argv: list[str] | None = None) -> pl.Trainer:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-workers", type=int, default=0, help="Ray Train workers (0: train in this process)")
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--synthetic", action="store_true", help="FakeData of CIFAR-10's shapes, no download")
    parser.add_argument("--data-dir", default="./data")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=None, help="use only this many images")
    parser.add_argument("--limit-train-batches", type=float, default=1.0)
    parser.add_argument("--default-root-dir", default=None)
    args = parser.parse_args(argv)

    dataset = make_dataset(args.data_dir, args.synthetic, args.size)
    train_loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
    limit = int(args.limit_train_batches) if args.limit_train_batches > 1 else args.limit_train_batches
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        accelerator="gpu" if args.use_gpu and not args.num_workers else "auto",
        limit_train_batches=limit,
        default_root_dir=args.default_root_dir,
    )
    trainer.fit(LitCIFAR10(), train_loader)
    print(f"train_loss: {float(trainer.callback_metrics['train_loss']):.4f}")
    return trainer


if __name__ == "__main__":
    main()

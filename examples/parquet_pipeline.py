"""Ray Data feeding the Trainer: parquet files, preprocessing as Ray tasks, each worker reading its own shard.

    python examples/parquet_pipeline.py                    # 2 Ray Train workers (DDP), 3 epochs
    python examples/parquet_pipeline.py --num-workers 0    # the same pipeline, iterated in-process

It writes scikit-learn's digits as a few parquet files with pyarrow (a stand-in for a real data lake),
reads them with ``ray.data.read_parquet``, decodes and augments them with ``map_batches``, and trains the
demo's CNN on them. Preprocessing runs as Ray Data tasks on whatever CPUs the workers leave free.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
import torch

try:  # run as a script (python examples/parquet_pipeline.py), or imported as examples.parquet_pipeline
    from digits import DigitsCNN  # the demo's model, unchanged
except ImportError:
    from examples.digits import DigitsCNN

import lightray as pl
from lightray.data import RayDataLoader


def write_parquet(folder: str, files: int = 4) -> dict[str, str]:
    """The digits as parquet: raw 0..16 pixel values and labels, 80/20 into train/ and val/ (absolute paths: Ray Data
    reads them in other processes, whose working folder is not this one)."""
    from sklearn.datasets import load_digits

    folder = os.path.abspath(folder)
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    n_val = len(order) // 5
    paths = {}
    for split, rows in (("train", order[n_val:]), ("val", order[:n_val])):
        paths[split] = os.path.join(folder, split)
        os.makedirs(paths[split], exist_ok=True)
        for i, part in enumerate(np.array_split(rows, files)):
            pixels = pa.FixedSizeListArray.from_arrays(pa.array(digits.data[part].ravel(), pa.uint8()), 64)
            table = pa.table({"pixels": pixels, "label": pa.array(digits.target[part], pa.int64())})
            pq.write_table(table, os.path.join(paths[split], f"part-{i}.parquet"))
    return paths


def decode(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pixels to 1x8x8 float images in [0, 1]."""
    images = np.stack(batch["pixels"]).astype(np.float32).reshape(-1, 1, 8, 8) / 16.0
    return {"image": images, "label": batch["label"]}


def augment(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Random one-pixel shifts and a little noise: the kind of work worth spreading over the cluster."""
    rng = np.random.default_rng()
    images = batch["image"]
    shifts = rng.integers(-1, 2, size=(len(images), 2))
    shifted = np.stack([np.roll(img, tuple(s), axis=(1, 2)) for img, s in zip(images, shifts)])
    noisy = shifted + rng.normal(0.0, 0.05, size=shifted.shape).astype(np.float32)
    return {"image": np.clip(noisy, 0.0, 1.0), "label": batch["label"]}


def parquet_rows(path: str) -> int:
    """Row count from the parquet footers: known without reading (or preprocessing) any data."""
    return sum(pq.ParquetFile(os.path.join(path, name)).metadata.num_rows for name in os.listdir(path))


class ParquetDigits(pl.LightningDataModule):
    """Ray Data pipelines as the datamodule's loaders; batches reach the model as (image, label)."""

    def __init__(self, paths: dict[str, str], batch_size: int = 64) -> None:
        super().__init__()
        self.paths, self.batch_size = paths, batch_size

    def train_dataloader(self) -> RayDataLoader:
        ds = ray.data.read_parquet(self.paths["train"]).map_batches(decode).map_batches(augment)
        rows = parquet_rows(self.paths["train"])
        return RayDataLoader(ds, batch_size=self.batch_size, shuffle=True, num_rows=rows)

    def val_dataloader(self) -> RayDataLoader:
        ds = ray.data.read_parquet(self.paths["val"]).map_batches(decode)
        return RayDataLoader(ds, batch_size=256, num_rows=parquet_rows(self.paths["val"]))

    def on_before_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> tuple:
        return batch["image"], batch["label"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="where to write the parquet files (default: a temp dir)")
    parser.add_argument("--default-root-dir", default="lightning_logs_parquet")
    args = parser.parse_args()

    pl.seed_everything(0)
    folder = args.data_dir or tempfile.mkdtemp(prefix="digits-parquet-")
    data = ParquetDigits(write_parquet(folder))
    model = DigitsCNN(lr=3e-3)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        num_workers=args.num_workers,
        default_root_dir=args.default_root_dir,
        log_every_n_steps=5,
    )
    trainer.fit(model, datamodule=data)
    print(f"val_acc={trainer.callback_metrics['val_acc'].item():.3f} after {trainer.global_step} steps")


if __name__ == "__main__":
    main()

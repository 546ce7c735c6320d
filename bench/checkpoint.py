"""Checkpoint save/load time: lightray against a bare ``torch.save`` / ``torch.load`` of the same dict.

A ~100 MB model (25M float32 parameters) after one SGD step. lightray's save is atomic (temporary
file, fsync, rename, folder fsync) and its load is safe (``weights_only=True`` plus format checks);
the baseline is the plain call on the same checkpoint dict, into the same folder, which leaves the
data in the page cache. Two lightray saves are timed: ``trainer.save_checkpoint(path)``, durable when
it returns, and the one ModelCheckpoint makes during training, where the fsync and rename finish on a
background thread while training goes on (the time shown is what the training loop waits).
Interleaved rounds, medians, ratios from this run.

    python bench/checkpoint.py [--repeats 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch import nn

import lightray as pl
from lightray.checkpoint import dump_checkpoint, load_checkpoint_file
from lightray.storage import wait_for_writes


class Big(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(*[nn.Linear(2500, 2500) for _ in range(4)])  # 25.0M parameters

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        return self.net(batch[0]).sum()

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):  # type: ignore[no-untyped-def]
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(2, 2500)), batch_size=2)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="folder to write in (default: a temporary folder)")
    args = parser.parse_args()

    model = Big()
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(model)
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        ours_path, bare_path = os.path.join(folder, "ours.ckpt"), os.path.join(folder, "bare.ckpt")
        times: dict[str, list[float]] = {"save_bare": [], "save_ours": [], "save_loop": [], "load_bare": [],
                                         "load_ours": []}  # fmt: skip
        background = {"background": True}
        for _ in range(args.repeats):
            checkpoint = dump_checkpoint(trainer)
            times["save_bare"].append(timed(lambda: torch.save(checkpoint, bare_path)))  # noqa: B023
            times["save_ours"].append(timed(lambda: trainer.save_checkpoint(ours_path)))
            times["save_loop"].append(timed(lambda: trainer.save_checkpoint(ours_path, storage_options=background)))
            wait_for_writes()
            times["load_bare"].append(timed(lambda: torch.load(bare_path, weights_only=True)))
            times["load_ours"].append(timed(lambda: load_checkpoint_file(ours_path)))
        file_mb = os.path.getsize(ours_path) / 1e6
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {size_mb:.0f} MB of parameters, checkpoint file {file_mb:.0f} MB, {args.repeats} rounds (median)")
    print(f"  save: bare torch.save {med['save_bare']:.3f} s")
    ratio = med["save_ours"] / med["save_bare"]
    print(f"        lightray, durable on return     {med['save_ours']:.3f} s -> {ratio:.2f}x")
    print(f"        lightray, as ModelCheckpoint    {med['save_loop']:.3f} s -> "
          f"{med['save_loop'] / med['save_bare']:.2f}x  (target <= 1.1; fsync+rename overlap training)")  # fmt: skip
    print(f"  load: bare torch.load {med['load_bare']:.3f} s, lightray {med['load_ours']:.3f} s "
          f"-> {med['load_ours'] / med['load_bare']:.2f}x  (target <= 1.1)")  # fmt: skip


if __name__ == "__main__":
    main()

"""Ray Data ingest: rows/s delivered to 2 workers, and training fed by Ray Data vs pre-materialized tensors.

1. Delivery: 2 lightray workers (``Trainer(num_workers=2)``, 0.5 CPU each) read epochs of 16,384 rows
   through a preprocessing function that costs real CPU (a 32x32 "image" decoded from bytes, blurred,
   normalized), and train nothing (``training_step`` returns None). Contenders: a ``RayDataLoader`` over
   ``ray.data.from_numpy(...).map_batches(preprocess)``, and a torch ``DataLoader`` whose ``collate_fn``
   runs the same ``preprocess`` on each batch (one loader worker process per rank). Rows/s over both ranks,
   in the second epoch.
2. Feeding training: in-process, an MLP (1024-2048-2048-10) at batch 256, fed by a ``RayDataLoader``
   (prefetching) over a cheap ``map_batches`` vs by a ``DataLoader`` over the same rows as tensors in memory.
   Steady-state steps/s (the first epoch is warm-up). Target: Ray Data >= 0.9x.

    python bench/ingest.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray as pl
from lightray.data import RayDataLoader

ROWS, IMAGE = 16384, 32
TRAIN_ROWS, TRAIN_BATCH, FEATURES = 32768, 256, 1024


# ---------------------------------------------------------------------- the preprocessing under test
def raw_rows(n: int) -> dict[str, np.ndarray]:
    raw = np.random.default_rng(0).integers(0, 256, size=(n, IMAGE * IMAGE), dtype=np.uint8)
    return {"raw": raw, "label": raw[:, 0].astype(np.int64) % 10}


def preprocess(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Decode bytes to float images, a 3x3 box blur, per-image normalization: ~CPU work per row."""
    images = np.asarray(batch["raw"], dtype=np.float32).reshape(-1, IMAGE, IMAGE) / 255.0
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)), mode="edge")
    blurred = sum(padded[:, i : i + IMAGE, j : j + IMAGE] for i in range(3) for j in range(3)) / 9.0
    mean, std = blurred.mean(axis=(1, 2), keepdims=True), blurred.std(axis=(1, 2), keepdims=True) + 1e-6
    return {"image": ((blurred - mean) / std).astype(np.float32), "label": np.asarray(batch["label"])}


def collate_preprocess(rows: list[tuple[np.ndarray, int]]) -> dict[str, torch.Tensor]:
    batch = preprocess({"raw": np.stack([r[0] for r in rows]), "label": np.array([r[1] for r in rows])})
    return {key: torch.as_tensor(value) for key, value in batch.items()}


class RawRows(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.data = raw_rows(n)

    def __len__(self) -> int:
        return len(self.data["label"])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.data["raw"][i], int(self.data["label"][i])


class EpochClock(pl.Callback):
    """Wall time of each training epoch (on every rank; rank 0's come back to the driver)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.times.append(time.perf_counter() - self._start)

    def state_dict(self) -> dict[str, Any]:
        return {"times": self.times}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.times = list(state["times"])


class ReadOnly(pl.LightningModule):
    """Reads batches and trains nothing: the epoch time is the ingest time."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Linear(1, 1)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        return None

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.0)


class MLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(FEATURES, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self.net(batch["x"]), batch["label"])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(callback: EpochClock, root: str, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=root, **kwargs,
    )  # fmt: skip


# ---------------------------------------------------------------------- 1. delivery to 2 workers
def delivery(source: str, root: str) -> float:
    import ray.data

    clock = EpochClock()
    if source == "ray_data":
        ds = ray.data.from_numpy(raw_rows(ROWS)["raw"]).map_batches(_raw_to_row)
        loader: Any = RayDataLoader(ds.map_batches(preprocess), batch_size=256, num_rows=ROWS)
    else:
        loader = DataLoader(RawRows(ROWS), batch_size=256, num_workers=1, collate_fn=collate_preprocess)
    run = trainer(clock, root, max_epochs=2, num_workers=2, storage_path=root, name=f"ingest-{source}")
    run.fit(ReadOnly(), train_dataloaders=loader)
    # the second epoch: the first also starts the loader processes / Ray Data's split coordinator
    return ROWS / clock.times[1]


def _raw_to_row(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # from_numpy names the column "data"; the label as raw_rows derives it, so both contenders see the same rows
    return {"raw": batch["data"], "label": batch["data"][:, 0].astype(np.int64) % 10}


# ---------------------------------------------------------------------- 2. training fed by Ray Data
def training(source: str, root: str) -> float:
    import ray.data

    rng = np.random.default_rng(0)
    x = rng.standard_normal((TRAIN_ROWS, FEATURES), dtype=np.float32)
    clock = EpochClock()
    if source == "ray_data":
        ds = ray.data.from_numpy(x).map_batches(lambda b: {"x": b["data"] * 1.0, "label": b["data"][:, 0] > 0})
        loader: Any = RayDataLoader(
            ds,
            batch_size=TRAIN_BATCH,
            num_rows=TRAIN_ROWS,
            prefetch_batches=4,
            dtypes={"x": torch.float32, "label": torch.long},
        )
    else:
        tensors = TensorDataset(torch.from_numpy(x), torch.from_numpy((x[:, 0] > 0).astype(np.int64)))
        loader = DataLoader(
            tensors, batch_size=TRAIN_BATCH, collate_fn=lambda rows: _as_dict(torch.utils.data.default_collate(rows))
        )
    trainer(clock, root, max_epochs=3).fit(MLP(), train_dataloaders=loader)
    steps = TRAIN_ROWS // TRAIN_BATCH
    return steps / statistics.median(clock.times[1:])


def _as_dict(batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"x": batch[0], "label": batch[1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    torch.set_num_threads(1)
    root = tempfile.mkdtemp(prefix="bench-ingest-")
    results: dict[str, list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so drifts of this noisy VM hit both contenders alike
        for source in ("torch", "ray_data"):
            results.setdefault(f"delivery/{source}", []).append(delivery(source, root))
            results.setdefault(f"training/{source}", []).append(training(source, root))
            print({key: [round(v, 1) for v in values] for key, values in results.items()}, flush=True)
    med = {key: statistics.median(values) for key, values in results.items()}
    print("\n| figure | torch | Ray Data | Ray Data / torch |\n|---|---|---|---|")
    for figure, unit in (("delivery", "rows/s over 2 workers"), ("training", "steps/s, batch 256")):
        torch_value, ray_value = med[f"{figure}/torch"], med[f"{figure}/ray_data"]
        print(f"| {figure} ({unit}) | {torch_value:.1f} | {ray_value:.1f} | {ray_value / torch_value:.2f}x |")


if __name__ == "__main__":
    main()

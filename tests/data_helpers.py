"""A Ray Data pipeline, a module and callbacks for the Ray Data tests (importable, so workers can load them)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import lightray as pl
from lightray.data import RayDataLoader

WEIGHTS = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32)


def features(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The preprocessing: features and a target computed from each row's id (so any row can be checked)."""
    ids = batch["id"]
    x = np.stack([np.sin(ids * 0.37 * (k + 1)) for k in range(4)], axis=1).astype(np.float32)
    return {"id": ids, "x": x, "y": (x @ WEIGHTS + 0.1).astype(np.float32)[:, None]}


def rows(n: int, start: int = 0):
    """The pipeline: ``n`` rows with ids ``start..start+n-1``, preprocessed as Ray Data tasks."""
    import ray.data

    return ray.data.range(n).map_batches(lambda b: features({"id": b["id"] + start}))


def rows_as_tensors(n: int, start: int = 0) -> list[dict[str, torch.Tensor]]:
    """The same rows for a torch DataLoader."""
    batch = features({"id": np.arange(start, start + n)})
    return [{key: torch.as_tensor(value[i]) for key, value in batch.items()} for i in range(n)]


class RowModel(pl.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(4, 1)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self.net(batch["x"]), batch["y"])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.mse_loss(self.net(batch["x"]), batch["y"]), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class RowData(pl.LightningDataModule):
    """Ray Data datasets from a datamodule: a shuffled training set and a bare validation dataset."""

    def __init__(self, train_rows: int, val_rows: int, batch_size: int) -> None:
        super().__init__()
        self.train_rows, self.val_rows, self.batch_size = train_rows, val_rows, batch_size

    def train_dataloader(self):
        return RayDataLoader(rows(self.train_rows), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return RayDataLoader(rows(self.val_rows, start=10_000), batch_size=self.batch_size)


class IdRecorder(pl.Callback):
    """The training row ids of every rank, per epoch: ``seen[epoch][rank]``, gathered so all ranks hold the same.

    Its state goes into checkpoints: after a resume it holds what the restored run had trained on.
    """

    def __init__(self) -> None:
        self.seen: dict[str, list[list[int]]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        gathered = pl_module.all_gather(batch["id"])  # [world, batch]
        epoch = self.seen.setdefault(str(trainer.current_epoch), [[] for _ in range(len(gathered))])
        for rank, ids in enumerate(gathered.tolist()):
            epoch[rank].extend(ids)

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = {epoch: [list(ids) for ids in ranks] for epoch, ranks in state["seen"].items()}

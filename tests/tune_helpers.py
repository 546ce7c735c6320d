"""A tiny module, a recording callback and the training function that the Tune tests search over."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray as pl
from lightray.tune import TuneReportCallback

STEPS_PER_EPOCH = 4  # 64 samples, batches of 16 (per trial, or split over 2 workers with batches of 8)


class Tiny(pl.LightningModule):
    """Linear regression; ``lr=0`` never learns, so its loss stays clearly worse than a trial that does."""

    def __init__(self, lr: float = 0.05, batch_size: int = 16, momentum: float = 0.9) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(8, 1)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), sync_dist=True)
        self.log("rank", float(self.global_rank))  # not synced: the Tune report averages it over ranks

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x[:32], self.y[:32]), batch_size=16)


class Record(pl.Callback):
    """Appends JSON lines on rank 0: each train start (step, lr, restored checkpoint's step) and validation."""

    def __init__(self, path: str, restore_from: str | None = None) -> None:
        self.path, self.restore_from = path, restore_from

    def _write(self, trainer, **row) -> None:
        if trainer.is_global_zero:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def on_train_start(self, trainer, pl_module):
        restored = saved_lr = None
        if self.restore_from:
            saved = torch.load(self.restore_from, weights_only=True)
            restored, saved_lr = int(saved["global_step"]), saved["optimizer_states"][0]["param_groups"][0]["lr"]
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self._write(trainer, event="start", step=trainer.global_step, lr=lr, config_lr=pl_module.hparams.lr,
                    restored_step=restored, checkpoint_lr=saved_lr)  # fmt: skip

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._write(trainer, event="val", epoch=trainer.current_epoch)


class FailOnce(pl.Callback):
    """Raises at the start of epoch ``epoch`` once (a marker file makes it once): an interrupted search."""

    def __init__(self, marker: str, epoch: int) -> None:
        self.marker, self.epoch = marker, epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("search interrupted on purpose")


def train_fn(config: dict) -> None:
    """The trial: one Trainer per config; what it records goes to ``config["record_dir"]/<trial id>.jsonl``."""
    import ray.tune

    from lightray.tune.trial import current

    pl.seed_everything(0)
    workers = config.get("num_workers", 0)
    record = os.path.join(config["record_dir"], ray.tune.get_context().get_trial_id() + ".jsonl")
    callbacks = [  # Record first: when Tune stops the trial at a report, what happened before it is written
        Record(record, restore_from=getattr(current(), "checkpoint_path", None)),
        TuneReportCallback(config.get("metrics", ["val_loss", "rank"])),
    ]
    if config.get("fail_marker"):
        callbacks.append(FailOnce(config["fail_marker"], epoch=2))
    trainer = pl.Trainer(
        max_epochs=config.get("max_epochs", 4),
        num_workers=workers,
        resources_per_worker={"CPU": 0.4} if workers else None,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Tiny(lr=config["lr"], batch_size=16 // max(workers, 1), momentum=config.get("momentum", 0.9)))


def train_on(config: dict, data: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A trial whose data arrives through ``tune.with_parameters`` (in Ray's object store, not in the config)."""
    import ray.tune

    pl.seed_everything(0)
    record = os.path.join(config["record_dir"], ray.tune.get_context().get_trial_id() + ".jsonl")
    model = Tiny(lr=config["lr"])
    model.x, model.y = data
    with open(record, "a") as f:
        f.write(json.dumps({"event": "data", "samples": len(data[0])}) + "\n")
    trainer = pl.Trainer(max_epochs=config["max_epochs"], callbacks=[Record(record), TuneReportCallback("val_loss")],
                         enable_progress_bar=False, enable_model_summary=False, logger=False)  # fmt: skip
    trainer.fit(model)


def read_records(record_dir: str, trial_id: str) -> list[dict]:
    with open(os.path.join(record_dir, trial_id + ".jsonl")) as f:
        return [json.loads(line) for line in f]


@contextlib.contextmanager
def tune_cluster() -> Iterator[None]:
    """A 2-CPU Ray cluster in which Tune can stop (ASHA) and pause (PBT) trials that drive Ray Train runs.

    A stopped trial is killed with its Ray Train controller; Ray's PlacementGroupCleaner then frees the workers'
    placement group. It asks the dashboard's state API, and finds "the" cluster through
    $RAY_TMPDIR/ray/ray_current_cluster when several Ray clusters share the machine (ray.init does not write it).
    """
    import ray

    ray.init(num_cpus=2, include_dashboard=True, logging_level="warning")
    address_file = None
    if os.environ.get("RAY_TMPDIR"):
        address_file = os.path.join(os.environ["RAY_TMPDIR"], "ray", "ray_current_cluster")
        with open(address_file, "w") as f:
            f.write(ray.get_runtime_context().gcs_address)
    try:
        yield
    finally:
        ray.shutdown()
        if address_file:
            os.remove(address_file)

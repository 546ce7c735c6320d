"""Exact resume: a run stopped mid-epoch and resumed from its checkpoint ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import lightray as pl
from lightray.callbacks import ModelCheckpoint


class CountingDataset(Dataset):
    """Random regression data that counts how often each item is loaded."""

    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(3)
        self.x, self.y = torch.randn(n, 8, generator=g), torch.randn(n, 1, generator=g)
        self.loads = 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.loads += 1
        return self.x[i] + 0.01 * torch.randn(8), self.y[i]  # a random augmentation: uses the global RNG


class Net(pl.LightningModule):
    def __init__(self, manual: bool = False) -> None:
        super().__init__()
        self.automatic_optimization = not manual
        self.body = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))
        self.train_set = CountingDataset()
        self.seen: list[tuple[int, int]] = []  # (epoch, batch_idx) of every training batch

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, batch_idx))
        x, y = batch
        loss = nn.functional.mse_loss(self.body(x), y)
        self.log("train_loss", loss)
        if self.automatic_optimization:
            return loss
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.lr_schedulers().step()
        return None

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.body(x), y))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=0.01)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.9)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=4, shuffle=True)

    def val_dataloader(self):
        return DataLoader(CountingDataset(12), batch_size=4)


class StopAfter(pl.Callback):
    """Crashes the run after ``step`` optimizer steps, as a killed process would stop it."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step >= self.step:
            raise KeyboardInterrupt("stopped on purpose")


class DrawingNet(Net):
    """Draws random numbers in hooks between its loader's set-up and the epoch's first batch."""

    def on_train_start(self):
        torch.rand(3)

    def on_train_epoch_start(self):
        torch.rand(2)


def train(tmp_path, manual: bool, ckpt_path=None, stop_at=None, every=3, net=Net, **trainer_kwargs):
    pl.seed_everything(7)
    model = net(manual=manual)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=every, save_top_k=-1,
                                  save_last=True)  # fmt: skip
    callbacks = [checkpoints] + ([StopAfter(stop_at)] if stop_at else [])
    trainer = pl.Trainer(max_epochs=3, callbacks=callbacks, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, **trainer_kwargs)  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        trainer.fit(model, ckpt_path=ckpt_path)
    return model, trainer


@pytest.mark.parametrize(
    ("manual", "trainer_kwargs", "stop_at"),
    [
        (False, dict(accumulate_grad_batches=2, val_check_interval=0.5), 7),
        (False, dict(), 13),  # the checkpoint at step 12 falls on the end of epoch 1's validation
        (True, dict(), 8),
    ],
    ids=["automatic_accumulate_midval", "automatic_epoch_boundary", "manual"],
)
def test_stopped_and_resumed_run_ends_bit_identical(tmp_path, manual, trainer_kwargs, stop_at):
    full, full_trainer = train(tmp_path / "full", manual, **trainer_kwargs)
    crashed, _ = train(tmp_path / "run", manual, stop_at=stop_at, **trainer_kwargs)
    assert len(crashed.seen) < len(full.seen)

    resumed, trainer = train(tmp_path / "run", manual, ckpt_path="last", **trainer_kwargs)
    loaded = torch.load(trainer.checkpoint_callback.last_model_path, weights_only=True)
    assert loaded["global_step"] == full_trainer.global_step

    # the resumed run starts right after the checkpoint's batch and repeats nothing
    assert crashed.seen + resumed.seen != full.seen  # the crashed run went past its last checkpoint ...
    first = full.seen.index(resumed.seen[0])
    assert resumed.seen == full.seen[first:]
    assert full.seen[first - 1] in crashed.seen
    # ... and skipped batches were not loaded again: only the rest of the epoch and later ones were
    rest_of_epoch = sum(1 for e, _ in resumed.seen if e == resumed.seen[0][0])
    later = len(resumed.seen) - rest_of_epoch
    assert resumed.train_set.loads == (rest_of_epoch + later) * 4

    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert trainer.global_step == full_trainer.global_step
    assert trainer.current_epoch == full_trainer.current_epoch == 3
    assert trainer.optimizers[0].param_groups[0]["lr"] == full_trainer.optimizers[0].param_groups[0]["lr"]


@pytest.mark.parametrize("net", [Net, DrawingNet])
def test_resume_from_every_checkpoint_of_a_run(tmp_path, net):
    """Whichever checkpoint a run resumes from, it ends where the uninterrupted run ended."""
    full, _ = train(tmp_path / "full", manual=False, every=4, val_check_interval=0.5, net=net)
    folder = tmp_path / "full" / "ckpts"
    paths = sorted(p for p in os.listdir(folder) if p.startswith("epoch"))
    assert len(paths) >= 6
    for name in paths:
        resumed, _ = train(tmp_path / name, manual=False, ckpt_path=str(folder / name), every=4,
                           val_check_interval=0.5, net=net)  # fmt: skip
        for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
            assert torch.equal(a, b), name


@pytest.mark.parametrize(("saved_world", "world", "accumulate", "expected"), [(2, 1, 1, 2), (4, 2, 1, 2), (2, 3, 1, 1)])
def test_resuming_on_another_number_of_workers_keeps_the_global_batch(saved_world, world, accumulate, expected):
    """Elastic training: the same samples count as consumed, and accumulation keeps workers x batches."""
    from lightray.strategies import SingleDeviceStrategy

    class Ranks(SingleDeviceStrategy):
        world_size = world  # type: ignore[assignment]

    trainer = pl.Trainer(accumulate_grad_batches=accumulate, logger=False, enable_progress_bar=False)
    trainer.strategy = Ranks()
    state = {"epoch": 1, "batch_idx": 6, "global_step": 20, "batches_that_stepped": 20, "total_batch_idx": 26,
             "phase": "before_batch", "epoch_start_rng": {}, "world_size": saved_world,
             "accumulate_grad_batches": 1}  # fmt: skip
    match = "keeps the global batch size" if (saved_world % world == 0) else "global batch size changes"
    with pytest.warns(UserWarning, match=f"Resuming on {world} workers instead of {saved_world}: .*{match}"):
        trainer.fit_loop.load_state_dict(state, rng_states=None)
    assert trainer.accumulate_grad_batches == expected
    assert trainer.fit_loop.state.batch_idx == 6 * saved_world // world


class Stream(torch.utils.data.IterableDataset):
    """A stream of the same items each epoch (with a random augmentation): no indices, no sampler to rebuild."""

    def __init__(self) -> None:
        self.items = CountingDataset()

    def __iter__(self):
        return (self.items[i] for i in range(len(self.items)))


class StreamNet(Net):
    def train_dataloader(self):
        return DataLoader(Stream(), batch_size=4)


def test_an_iterable_dataset_resumes_mid_epoch_by_count_to_the_same_weights(tmp_path):
    full, full_trainer = train(tmp_path / "full", False, net=StreamNet)
    crashed, _ = train(tmp_path / "run", False, stop_at=7, net=StreamNet)
    resumed, trainer = train(tmp_path / "run", False, ckpt_path="last", net=StreamNet)
    assert len(crashed.seen) < len(full.seen) and resumed.seen == full.seen[-len(resumed.seen) :]
    assert resumed.seen[0] == (0, 6)  # after the checkpoint at step 6, mid-epoch: the stream's first 6 batches read
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert trainer.global_step == full_trainer.global_step == 30

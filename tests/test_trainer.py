"""Trainer arguments and loop behaviour."""

from __future__ import annotations

import csv
import datetime
import os
import time

import pytest
import torch
from torch.utils.data import DataLoader

import lightray as pl
from lightray.loggers import Logger
from lightray.testing import BoringDataModule, BoringModel, RandomDataset


class Counter(pl.Callback):
    def __init__(self):
        self.counts: dict[str, int] = {}

    def _add(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1

    def on_train_batch_end(self, *args):
        self._add("train_batch")

    def on_validation_batch_end(self, trainer, *args):
        self._add("sanity_batch" if trainer.sanity_checking else "val_batch")

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._add("val_epoch")

    def on_train_epoch_end(self, *args):
        self._add("train_epoch")

    def on_test_batch_end(self, *args):
        self._add("test_batch")

    def on_predict_batch_end(self, *args):
        self._add("predict_batch")


def fit_counts(quiet, model=None, **kwargs):
    counter = Counter()
    trainer = pl.Trainer(callbacks=[counter], **quiet, **kwargs)
    trainer.fit(model or BoringModel())
    return trainer, counter.counts


def test_max_steps_stops_mid_epoch(quiet):
    trainer, counts = fit_counts(quiet, max_steps=5, num_sanity_val_steps=0)
    assert trainer.global_step == 5 and counts["train_batch"] == 5
    assert counts["train_epoch"] == 1


@pytest.mark.parametrize(("limit", "expected"), [(3, 3), (0.25, 8), (1.0, 32)])
def test_limit_batches(quiet, limit, expected):
    _, counts = fit_counts(quiet, max_epochs=1, limit_train_batches=limit, limit_val_batches=limit,
                           num_sanity_val_steps=0)  # fmt: skip
    assert counts["train_batch"] == expected
    assert counts["val_batch"] == expected


def test_sanity_check_steps(quiet):
    _, counts = fit_counts(quiet, max_epochs=1, limit_train_batches=1, num_sanity_val_steps=3)
    assert counts["sanity_batch"] == 3
    _, counts = fit_counts(quiet, max_epochs=1, limit_train_batches=1, limit_val_batches=5, num_sanity_val_steps=-1)
    assert counts["sanity_batch"] == 5


def test_sanity_check_results_are_forgotten(quiet):
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=0, num_sanity_val_steps=2, **quiet)
    trainer.fit(BoringModel())
    assert "val_loss" not in trainer.callback_metrics


@pytest.mark.parametrize(("interval", "epochs", "val_epochs"), [(0.25, 1, 4), (10, 1, 3), (1.0, 3, 3)])
def test_val_check_interval(quiet, interval, epochs, val_epochs):
    _, counts = fit_counts(quiet, max_epochs=epochs, val_check_interval=interval, limit_val_batches=1,
                           num_sanity_val_steps=0)  # fmt: skip
    assert counts["val_epoch"] == val_epochs


def test_check_val_every_n_epoch(quiet):
    _, counts = fit_counts(quiet, max_epochs=4, limit_train_batches=2, limit_val_batches=1,
                           check_val_every_n_epoch=2, num_sanity_val_steps=0)  # fmt: skip
    assert counts["val_epoch"] == 2


def test_val_check_interval_across_epochs(quiet):
    _, counts = fit_counts(quiet, max_epochs=3, limit_train_batches=4, limit_val_batches=1, val_check_interval=6,
                           check_val_every_n_epoch=None, num_sanity_val_steps=0)  # fmt: skip
    assert counts["val_epoch"] == 2  # after batches 6 and 12


def test_min_epochs_overrides_early_stop(quiet):
    class StopAtOnce(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            trainer.should_stop = True

    trainer = pl.Trainer(min_epochs=3, max_epochs=10, limit_train_batches=2, limit_val_batches=0,
                         callbacks=[StopAtOnce()], **quiet)  # fmt: skip
    trainer.fit(BoringModel())
    assert trainer.current_epoch == 3


def test_max_time_stops_training(quiet):
    class Slow(BoringModel):
        def training_step(self, batch, batch_idx):
            time.sleep(0.05)
            return super().training_step(batch, batch_idx)

    start = time.monotonic()
    trainer = pl.Trainer(max_epochs=100, max_time=datetime.timedelta(seconds=0.3), limit_val_batches=0, **quiet)
    trainer.fit(Slow())
    assert time.monotonic() - start < 5
    assert 3 <= trainer.global_step < 20


def test_on_train_batch_start_minus_one_ends_the_epoch(quiet):
    class Cut(BoringModel):
        def on_train_batch_start(self, batch, batch_idx):
            return -1 if batch_idx == 3 else None

    trainer, counts = fit_counts(quiet, model=Cut(), max_epochs=2, limit_val_batches=0)
    assert trainer.global_step == 6 and counts["train_epoch"] == 2


def test_gradient_clipping_by_value(quiet):
    seen = []

    class Big(BoringModel):
        def training_step(self, batch, batch_idx):
            return self.loss(batch) * 1000

        def on_before_optimizer_step(self, optimizer):
            seen.append(f"before_clip_max={bool(self.layer.weight.grad.abs().max() > 0.5)}")

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            optimizer.step(closure=optimizer_closure)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            pass

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            seen.append(float(self.layer.weight.grad.abs().max()))

    pl.Trainer(max_steps=3, gradient_clip_val=0.5, gradient_clip_algorithm="value", limit_val_batches=0,
               **quiet).fit(Big())  # fmt: skip
    assert seen[0::2] == ["before_clip_max=True"] * 3
    assert all(v <= 0.5 for v in seen[1::2])


def test_bf16_mixed_on_cpu(quiet):
    dtypes = []

    class Bf16(BoringModel):
        def training_step(self, batch, batch_idx):
            out = self(batch)
            dtypes.append(out.dtype)
            return out.float().sum()

    pl.Trainer(max_steps=2, precision="bf16-mixed", limit_val_batches=0, **quiet).fit(Bf16())
    assert dtypes == [torch.bfloat16, torch.bfloat16]


def test_fast_dev_run(quiet):
    trainer, counts = fit_counts(quiet, fast_dev_run=True, max_epochs=50)
    assert counts == {"train_batch": 1, "val_batch": 1, "val_epoch": 1, "train_epoch": 1}
    assert trainer.global_step == 1 and trainer.loggers == []


def test_deterministic_turns_on_deterministic_algorithms(quiet):
    try:
        pl.Trainer(deterministic=True, **quiet)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_seed_everything_makes_runs_repeatable(quiet):
    def run():
        pl.seed_everything(123)
        model = BoringModel()
        loader = DataLoader(RandomDataset(32, 64), batch_size=4, shuffle=True)
        pl.Trainer(max_epochs=2, limit_val_batches=0, **quiet).fit(model, loader)
        return model.layer.weight.detach().clone()

    assert torch.equal(run(), run())


def test_log_every_n_steps_reaches_loggers(quiet):
    class Recorder(Logger):
        def __init__(self):
            self.records = []

        def log_metrics(self, metrics, step=None):
            self.records.append((step, sorted(metrics)))

    recorder = Recorder()
    quiet = {**quiet, "logger": recorder}
    pl.Trainer(max_epochs=2, limit_train_batches=10, limit_val_batches=2, log_every_n_steps=4, **quiet).fit(
        BoringModel()
    )
    train_steps = [step for step, keys in recorder.records if "train_loss" in keys]
    val_steps = [step for step, keys in recorder.records if "val_loss" in keys]
    assert train_steps == [3, 7, 11, 15, 19]
    assert val_steps == [9, 19]
    assert all("epoch" in keys for _, keys in recorder.records)


def test_default_logger_is_tensorboard_when_installed_as_in_lightning(tmp_path):
    pytest.importorskip("tensorboard", reason="the dev extra installs tensorboard")
    from lightray.loggers.plot import read_metrics

    trainer = pl.Trainer(max_epochs=1, default_root_dir=tmp_path, log_every_n_steps=5, enable_progress_bar=False)
    assert [type(logger).__name__ for logger in trainer.loggers] == ["TensorBoardLogger"]
    trainer.fit(BoringModel())
    log_dir = tmp_path / "lightning_logs" / "version_0"
    (events,) = log_dir.glob("events.out.tfevents.*")  # one event file, as Lightning writes
    assert [step for step, _ in read_metrics(str(events))["train_loss"]] == [4, 9, 14, 19, 24, 29]


def test_csv_logger_is_the_default_without_tensorboard(tmp_path, monkeypatch, caplog):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "tensorboard" in name.lower()
                        else find_spec(name, *a))  # fmt: skip
    pl.trainer_args._say_csv_is_the_default.cache_clear()  # said once per process: let this test see it

    class WithHparams(BoringModel):
        def __init__(self, size=32):
            super().__init__(size)
            self.save_hyperparameters()

    model = WithHparams()
    with caplog.at_level("INFO", logger="lightray"):
        trainer = pl.Trainer(max_epochs=1, default_root_dir=tmp_path, log_every_n_steps=5, enable_progress_bar=False)
    assert "TensorBoard is the default logger when `tensorboard` or `tensorboardX` is installed" in caplog.text
    trainer.fit(model)
    log_dir = tmp_path / "lightning_logs" / "version_0"
    assert trainer.log_dir == str(log_dir)
    rows = list(csv.DictReader((log_dir / "metrics.csv").read_text().splitlines()))
    assert [r["step"] for r in rows if r["train_loss"]] == ["4", "9", "14", "19", "24", "29"]
    assert any(r["val_loss"] for r in rows)
    assert "size: 32" in (log_dir / "hparams.yaml").read_text()
    pl.Trainer(max_epochs=1, default_root_dir=tmp_path, enable_progress_bar=False).fit(BoringModel())
    assert os.path.isdir(tmp_path / "lightning_logs" / "version_1")


def test_estimated_stepping_batches_inside_configure_optimizers(quiet):
    seen = []

    class Model(BoringModel):
        def configure_optimizers(self):
            seen.append(self.trainer.estimated_stepping_batches)
            return super().configure_optimizers()

    pl.Trainer(max_epochs=3, limit_train_batches=10, accumulate_grad_batches=4, **quiet).fit(Model())
    pl.Trainer(max_steps=7, **quiet).fit(Model())
    assert seen == [9, 7]


def test_datamodule_in_every_stage(quiet):
    trainer = pl.Trainer(max_epochs=1, **quiet)
    datamodule = BoringDataModule()
    model = BoringModel()
    trainer.fit(model, datamodule=datamodule)
    assert trainer.datamodule is datamodule and trainer.global_step == 32
    assert trainer.validate(model, datamodule=datamodule, verbose=False)[0].keys() == {"val_loss"}
    assert trainer.test(model, datamodule=datamodule, verbose=False)[0].keys() == {"test_loss"}
    predictions = trainer.predict(model, datamodule=datamodule)
    assert len(predictions) == 32 and predictions[0].shape == (2, 2)


def test_predict_several_loaders_and_test_results_printed(quiet, capsys):
    model = BoringModel()
    loaders = [DataLoader(RandomDataset(32, 4), batch_size=2), DataLoader(RandomDataset(32, 6), batch_size=3)]
    predictions = pl.Trainer(**quiet).predict(model, loaders)
    assert [len(p) for p in predictions] == [2, 2]
    pl.Trainer(**quiet).test(model)
    assert "test_loss" in capsys.readouterr().out


def test_validate_after_fit_sees_trained_weights(quiet):
    model = BoringModel()
    trainer = pl.Trainer(max_epochs=3, **quiet)
    before = trainer.validate(model, verbose=False)[0]["val_loss"]
    trainer.fit(model)
    after = trainer.validate(model, verbose=False)[0]["val_loss"]
    assert after < before
    assert trainer.current_epoch == 3


def test_on_exception_reaches_callbacks_and_error_propagates(quiet):
    seen = []

    class Boom(BoringModel):
        def training_step(self, batch, batch_idx):
            raise ValueError("user bug")

    class Catch(pl.Callback):
        def on_exception(self, trainer, pl_module, exception):
            seen.append(exception)

    with pytest.raises(ValueError, match="user bug"):
        pl.Trainer(max_steps=1, callbacks=[Catch()], **quiet).fit(Boom())
    assert len(seen) == 1 and isinstance(seen[0], ValueError)


def test_inference_mode_in_test_and_no_grad_in_fit_validation(quiet):
    modes = []

    class Modes(BoringModel):
        def validation_step(self, batch, batch_idx):
            modes.append(("val", torch.is_inference_mode_enabled(), torch.is_grad_enabled()))

        def test_step(self, batch, batch_idx):
            modes.append(("test", torch.is_inference_mode_enabled(), torch.is_grad_enabled()))

    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, limit_test_batches=1,
                         num_sanity_val_steps=0, **quiet)  # fmt: skip
    model = Modes()
    trainer.fit(model)
    trainer.test(model, verbose=False)
    assert modes == [("val", False, False), ("test", True, False)]

"""Built-in callbacks, compared with Lightning's where they make decisions."""

from __future__ import annotations

import io
import os

import pytest
import torch

import lightray as pl
from lightray.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    LineRenderer,
    ModelCheckpoint,
    ModelSummary,
    ProgressBar,
    Timer,
)
from lightray.loggers import Logger
from lightray.testing import BoringModel

lightning = pytest.importorskip("pytorch_lightning", reason="comparisons need the dev extra")

METRIC_SEQUENCE = [0.50, 0.30, 0.40, 0.30, 0.20, 0.60, 0.25, 0.70]


def scripted(framework):
    class Scripted(framework.LightningModule):
        """Logs a predetermined validation metric each epoch."""

        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val_metric", METRIC_SEQUENCE[self.current_epoch])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

        def _loader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 4)), batch_size=2)

        def train_dataloader(self):
            return self._loader()

        def val_dataloader(self):
            return self._loader()

    return Scripted


def run_scripted(framework, tmp_path, callbacks, epochs=None):
    trainer = framework.Trainer(
        max_epochs=epochs or len(METRIC_SEQUENCE), callbacks=callbacks, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(scripted(framework)())
    return trainer


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(monitor="val_metric", save_top_k=2, filename="{epoch}-{val_metric:.2f}", save_last=True),
        dict(monitor="val_metric", save_top_k=3, mode="max"),
        dict(monitor=None, save_top_k=1),
        dict(monitor=None, save_top_k=-1, every_n_epochs=2),
        dict(monitor="val_metric", save_top_k=-1, filename="fixed"),  # collisions: fixed, fixed-v1, ...
        dict(monitor="val_metric", save_top_k=0, save_last=True),
        dict(every_n_train_steps=3, save_top_k=-1, filename="{step}", auto_insert_metric_name=False),
    ],
)
def test_model_checkpoint_same_files_and_top_k_as_lightning(tmp_path, kwargs):
    results = {}
    for framework, cls in ((pl, ModelCheckpoint), (lightning, lightning.callbacks.ModelCheckpoint)):
        folder = tmp_path / framework.__name__
        callback = cls(dirpath=folder, **kwargs)
        run_scripted(framework, tmp_path, [callback])
        results[framework.__name__] = (
            sorted(os.listdir(folder)) if folder.exists() else [],
            os.path.basename(callback.best_model_path),
            None if callback.best_model_score is None else float(callback.best_model_score),
            sorted(os.path.basename(p) for p in callback.best_k_models),
            os.path.basename(callback.last_model_path),
        )
    assert results["lightray"] == results["pytorch_lightning"]
    assert results["lightray"][0]  # something was saved


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patience=2),
        dict(patience=1, min_delta=0.15),
        dict(patience=3, mode="max"),
        dict(patience=10, stopping_threshold=0.26),
        dict(patience=10, divergence_threshold=0.55),
    ],
)
def test_early_stopping_stops_at_the_same_epoch_as_lightning(tmp_path, kwargs):
    stopped = {}
    for framework, cls in ((pl, EarlyStopping), (lightning, lightning.callbacks.EarlyStopping)):
        callback = cls(monitor="val_metric", **kwargs)
        trainer = run_scripted(framework, tmp_path, [callback])
        stopped[framework.__name__] = (trainer.current_epoch, callback.stopped_epoch, callback.wait_count)
    assert stopped["lightray"] == stopped["pytorch_lightning"]


def test_early_stopping_state_survives_resume(tmp_path):
    first = EarlyStopping(monitor="val_metric", patience=2)
    run_scripted(pl, tmp_path, [first, ModelCheckpoint(dirpath=tmp_path, save_last=True)], epochs=3)
    assert first.wait_count == 1  # epoch 2 did not improve on 0.3
    second = EarlyStopping(monitor="val_metric", patience=2)
    trainer = pl.Trainer(max_epochs=8, callbacks=[second, ModelCheckpoint(dirpath=tmp_path, save_last=True)],
                         logger=False, enable_progress_bar=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(scripted(pl)(), ckpt_path=str(tmp_path / "last.ckpt"))
    reference = run_scripted(pl, tmp_path / "ref", [EarlyStopping(monitor="val_metric", patience=2)])
    assert trainer.current_epoch == reference.current_epoch == 4  # a fresh EarlyStopping would run to 7
    assert float(second.best_score) == pytest.approx(0.3)


def test_early_stopping_unknown_metric(tmp_path):
    with pytest.raises(pl.MisconfigurationError, match=r"monitor='nope'.*\['val_metric'\]"):
        run_scripted(pl, tmp_path, [EarlyStopping(monitor="nope")], epochs=1)


def test_learning_rate_monitor_logs_each_step(tmp_path):
    class Recorder(Logger):
        def __init__(self):
            self.rows = []

        def log_metrics(self, metrics, step=None):
            self.rows.append((step, metrics))

    class Scheduled(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    recorder, monitor = Recorder(), LearningRateMonitor(logging_interval="step")
    pl.Trainer(max_steps=4, log_every_n_steps=1, logger=recorder, callbacks=[monitor], enable_progress_bar=False,
               enable_checkpointing=False, limit_val_batches=0).fit(Scheduled())  # fmt: skip
    assert monitor.lrs == {"lr-SGD": [1.0, 0.5, 0.25, 0.125]}
    assert [m["lr-SGD"] for _, m in recorder.rows if "lr-SGD" in m] == [1.0, 0.5, 0.25, 0.125]
    with pytest.raises(pl.MisconfigurationError, match="needs a logger"):
        pl.Trainer(max_steps=1, logger=False, callbacks=[LearningRateMonitor()]).fit(BoringModel())


def test_model_summary_prints_parameter_counts(capsys):
    pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               callbacks=[ModelSummary()]).fit(BoringModel())  # fmt: skip
    out = capsys.readouterr().out
    assert "layer" in out and "Linear" in out and "66        Trainable params" in out


def test_timer_budget_is_kept_across_resume(tmp_path):
    timer = Timer(duration=1000.0)
    trainer = pl.Trainer(max_steps=3, callbacks=[timer, ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3)],
                         logger=False, enable_progress_bar=False)  # fmt: skip
    trainer.fit(BoringModel())
    spent = timer.time_elapsed()
    ckpt = torch.load(tmp_path / "epoch=0-step=3.ckpt", weights_only=True)
    resumed = Timer(duration=1000.0)
    resumed.load_state_dict(ckpt["callbacks"][timer.state_key])
    assert 0 < resumed.time_elapsed() <= spent


def test_progress_lines_when_not_a_tty():
    stream = io.StringIO()
    bar = ProgressBar(line_every_n_steps=10, renderer=LineRenderer(10, stream=stream))
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=25, limit_val_batches=3, callbacks=[bar], logger=False,
                         enable_checkpointing=False, num_sanity_val_steps=0)  # fmt: skip

    class WithBarMetric(BoringModel):
        def training_step(self, batch, batch_idx):
            loss = self.loss(batch)
            self.log("shown", loss, prog_bar=True)
            return loss

    trainer.fit(WithBarMetric())
    lines = stream.getvalue().splitlines()
    train_lines = [line for line in lines if line.startswith("Epoch 0")]
    assert [line.split()[2] for line in train_lines] == ["10/25", "20/25", "25/25"]
    assert "shown=" in train_lines[-1]
    assert any(line.startswith("Validation: 3/3") for line in lines)


def test_progress_bar_with_tqdm(capsys):
    from lightray.callbacks import TqdmRenderer

    bar = ProgressBar(renderer=TqdmRenderer())
    pl.Trainer(max_epochs=1, limit_train_batches=5, limit_val_batches=2, callbacks=[bar], logger=False,
               enable_checkpointing=False).fit(BoringModel())  # fmt: skip
    err = capsys.readouterr().err
    assert "Epoch 0" in err and "5/5" in err

"""Loggers: CSV (the default), TensorBoard, MLflow, and several at once."""

from __future__ import annotations

import csv
import os

import pytest

import lightray as pl
from lightray.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger
from lightray.testing import BoringModel


class HP(BoringModel):
    def __init__(self, size: int = 32, lr: float = 0.1):
        super().__init__(size=size)
        self.save_hyperparameters()


def fit_with(logger, tmp_path, **kwargs):
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=6, limit_val_batches=2, log_every_n_steps=2,
                         logger=logger, default_root_dir=tmp_path, enable_progress_bar=False, **kwargs)  # fmt: skip
    trainer.fit(HP())
    return trainer


def test_csv_logger_layout_with_checkpoints_beside(tmp_path):
    trainer = fit_with(CSVLogger(tmp_path), tmp_path)
    version = tmp_path / "lightning_logs" / "version_0"
    assert sorted(os.listdir(version)) == ["checkpoints", "hparams.yaml", "metrics.csv"]
    assert os.listdir(version / "checkpoints") == ["epoch=1-step=12.ckpt"]
    rows = list(csv.DictReader((version / "metrics.csv").read_text().splitlines()))
    assert {"step", "epoch", "train_loss", "val_loss"} <= set(rows[0])
    assert trainer.logger.version == 0 and trainer.logger.name == "lightning_logs"


def test_tensorboard_logger_writes_events(tmp_path):
    pytest.importorskip("tensorboardX", reason="TensorBoardLogger needs tensorboardX (dev extra) or tensorboard")

    trainer = fit_with(TensorBoardLogger(tmp_path), tmp_path)
    log_dir = trainer.logger.log_dir
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(log_dir))
    with open(os.path.join(log_dir, "hparams.yaml")) as f:
        assert "lr: 0.1" in f.read()


def test_tensorboard_scalars_readable(tmp_path):
    pytest.importorskip("tensorboardX", reason="TensorBoardLogger needs tensorboardX (dev extra) or tensorboard")
    from tensorboardX.proto import event_pb2

    trainer = fit_with(TensorBoardLogger(tmp_path), tmp_path)
    log_dir = trainer.logger.log_dir
    tags = set()
    for name in os.listdir(log_dir):
        if name.startswith("events.out"):
            with open(os.path.join(log_dir, name), "rb") as f:
                data = f.read()
            offset = 0
            while offset < len(data):  # TFRecord framing: length, crc, payload, crc
                length = int.from_bytes(data[offset : offset + 8], "little")
                event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
                tags.update(v.tag for v in event.summary.value)
                offset += 12 + length + 4
    assert {"train_loss", "val_loss", "epoch"} <= tags


def test_mlflow_logger_with_local_file_store(tmp_path):
    pytest.importorskip("mlflow", reason="MLFlowLogger needs mlflow (dev extra: mlflow-skinny)")
    from mlflow.tracking import MlflowClient

    logger = MLFlowLogger(experiment_name="digits", tracking_uri=f"file:{tmp_path}/mlruns", run_name="r1")
    fit_with(logger, tmp_path)
    client = MlflowClient(tracking_uri=f"file:{tmp_path}/mlruns")
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"size": "32", "lr": "0.1"}
    assert {"train_loss", "val_loss", "epoch"} <= set(run.data.metrics)
    history = client.get_metric_history(logger.run_id, "train_loss")
    assert [m.step for m in history] == [1, 3, 5, 7, 9, 11]


def test_several_loggers_at_once(tmp_path):
    pytest.importorskip("tensorboardX", reason="needs tensorboardX (dev extra)")
    loggers = [CSVLogger(tmp_path / "csv"), TensorBoardLogger(tmp_path / "tb")]
    trainer = fit_with(loggers, tmp_path)
    assert trainer.logger is loggers[0] and trainer.loggers == loggers
    assert os.path.exists(tmp_path / "csv" / "lightning_logs" / "version_0" / "metrics.csv")
    assert os.path.isdir(tmp_path / "tb" / "lightning_logs" / "version_0")


def test_failed_run_is_marked_failed(tmp_path):
    pytest.importorskip("mlflow", reason="needs mlflow (dev extra: mlflow-skinny)")

    class Boom(HP):
        def training_step(self, batch, batch_idx):
            raise ValueError("bad batch")

    logger = MLFlowLogger(tracking_uri=f"file:{tmp_path}/mlruns")
    with pytest.raises(ValueError):
        pl.Trainer(max_steps=1, logger=logger, enable_progress_bar=False).fit(Boom())
    assert logger.experiment.get_run(logger.run_id).info.status == "FAILED"

"""CometLogger: an offline experiment of the same program in lightray and in Lightning holds the same data.

An offline experiment is archived when it ends as ``<offline_directory>/<key>-<random>.zip`` (for
``comet upload``): ``experiment.json`` (key, project) and ``messages.json`` (one JSON message a line: parameters,
metrics with step and epoch, others, uploaded code). These tests read that archive.

Lightning 2.6's ``CometLogger(online=False)`` passes ``disabled=True`` to Comet, so with comet_ml 3.x it writes
nothing; its run here leaves ``online`` to Comet's configuration (``COMET_START_ONLINE=false``) instead.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import json
import math
import os
import pickle
import sys
import tempfile
import zipfile
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray
from lightray.errors import MisconfigurationError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("comet_ml") is None,
    reason="CometLogger needs comet_ml (the comet extra: pip install 'lightray[comet]')",
)


@pytest.fixture(autouse=True)
def offline_comet(tmp_path, monkeypatch):
    """Quiet, with no Comet configuration file and every temporary file under tmp_path."""
    monkeypatch.setenv("COMET_DISABLE_AUTO_LOGGING", "1")
    monkeypatch.setenv("COMET_LOGGING_CONSOLE", "error")
    monkeypatch.setenv("COMET_CONFIG", str(tmp_path / "no.comet.config"))
    monkeypatch.delenv("COMET_START_ONLINE", raising=False)
    monkeypatch.delenv("COMET_API_KEY", raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))


QUIET = {"display_summary_level": 0, "log_env_details": False, "auto_output_logging": None}


def archive(folder: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """The archive's name, its experiment.json and its messages."""
    (path,) = glob.glob(os.path.join(folder, "*.zip"))
    with zipfile.ZipFile(path) as z:
        experiment = json.loads(z.read("experiment.json"))
        messages = [json.loads(line) for line in z.read("messages.json").decode().splitlines()]
    return os.path.basename(path), experiment, messages


def logged(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """What the program logged: parameters, metrics (without Comet's ``sys.*`` ones), others, uploaded code."""
    of = {kind: [m["payload"] for m in messages if m["type"] == kind] for kind in {m["type"] for m in messages}}
    params = {p["param"]["paramName"]: p["param"]["paramValue"] for p in of.get("parameter_msg", [])
              if p["param"]["source"] == "manual"}  # fmt: skip
    metrics = [(p["metric"]["metricName"], p["metric"]["metricValue"], p["metric"]["step"], p["metric"]["epoch"])
               for p in of.get("metric_msg", []) if not p["metric"]["metricName"].startswith("sys.")]  # fmt: skip
    others = {p["key"]: p["value"] for p in of.get("log_other", [])}
    code = [(p["metadata"]["source_code_type"], p["additional_params"]["fileName"])
            for p in of.get("file_upload", []) if p["upload_type"] == "source_code"]  # fmt: skip
    return {"params": params, "metrics": metrics, "others": others, "code": code}


def program(pl: Any, folder: str, **logger_kwargs: Any) -> dict[str, Any]:
    """A Lightning-style script: hyperparameters, train/val logging, a checkpoint, an offline CometLogger."""
    loggers = importlib.import_module(f"{pl.__name__}.loggers")

    class Regressor(pl.LightningModule):
        def __init__(self, hidden: int = 8, lr: float = 0.05) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 1))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    pl.seed_everything(7)
    logger = loggers.CometLogger(project="digits", offline_directory=folder, **QUIET, **logger_kwargs)
    trainer = pl.Trainer(max_epochs=2, log_every_n_steps=2, logger=logger, accelerator="cpu", enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(Regressor(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=16))
    experiment = logger.experiment
    found = {"kind": type(experiment).__name__, "version": logger.version, "key": experiment.get_key(),
             "name": logger.name, "save_dir": logger.save_dir, "log_dir": trainer.log_dir,
             "checkpoint": os.path.relpath(trainer.checkpoint_callback.best_model_path, folder)}  # fmt: skip
    experiment.end()
    return found


def test_offline_experiment_same_as_lightning(tmp_path, monkeypatch):
    pl = pytest.importorskip("pytorch_lightning", reason="the comparison needs the dev extra (pytorch-lightning)")
    ours = program(lightray, str(tmp_path / "lightray"), online=False)
    monkeypatch.setenv("COMET_START_ONLINE", "false")
    theirs = program(pl, str(tmp_path / "lightning"))

    runs = []
    for found, folder in [(ours, str(tmp_path / "lightray")), (theirs, str(tmp_path / "lightning"))]:
        assert found["kind"] == "OfflineExperiment" and found["version"] == found["key"] and found["name"] == "digits"
        assert found["save_dir"] == found["log_dir"] == folder  # Lightning's trainer.log_dir: the save_dir
        assert found["checkpoint"] == os.path.join("digits", found["key"], "checkpoints", "epoch=1-step=8.ckpt")
        name, experiment, messages = archive(folder)
        assert name.startswith(f"{found['key']}-") and sorted(os.listdir(folder)) == sorted([name, "digits"])
        assert experiment["offline_id"] == found["key"] and experiment["project_name"] == "digits"
        runs.append(logged(messages))
    mine, lightnings = runs
    assert mine["params"] == lightnings["params"] == {"hidden": 8, "lr": 0.05}
    assert [m[0] for m in mine["metrics"]] == [m[0] for m in lightnings["metrics"]]
    assert {m[0] for m in mine["metrics"]} == {"train_loss_step", "train_loss_epoch", "val_loss"}
    for (name, value, step, epoch), (_, their_value, their_step, their_epoch) in zip(
        mine["metrics"], lightnings["metrics"], strict=True
    ):
        assert (step, epoch) == (their_step, their_epoch), name
        assert math.isclose(value, their_value, rel_tol=1e-5, abs_tol=1e-5), name
    assert [m[2] for m in mine["metrics"] if m[0] == "train_loss_step"] == [1, 3, 5, 7]
    # the code uploaded is this program's, not lightray's logger
    assert mine["code"][0] == lightnings["code"][0] == ("experiment_creation", __file__)
    assert mine["others"]["Created from"] == "lightray" and lightnings["others"]["Created from"] == "pytorch-lightning"


def test_a_copy_in_another_process_makes_the_experiment_and_ends_it(tmp_path):
    """As on a Ray Train worker: the driver's logger is pickled without an experiment; the copy creates it with the
    key the driver's logger now reports, and ends it (archiving it) when the stage ends."""
    from lightray.loggers import CometLogger

    driver = CometLogger(online=False, offline_directory=str(tmp_path), project="ray", **QUIET)
    worker = pickle.loads(pickle.dumps(driver))
    assert driver.version is not None and worker.version == driver.version and not glob.glob(f"{tmp_path}/*.zip")
    worker.log_metrics({"loss": 1.0, "epoch": 0.0}, step=1)
    assert worker.experiment.get_key() == driver.version
    worker.finalize("success")
    name, experiment, messages = archive(str(tmp_path))
    assert name.startswith(driver.version) and experiment["offline_id"] == driver.version
    assert logged(messages)["metrics"] == [("loss", 1.0, 1, 0)]
    assert pickle.loads(pickle.dumps(driver)).version == driver.version  # every stage: the same experiment


def test_lightnings_deprecated_arguments(tmp_path):
    from lightray.loggers import CometLogger

    logger = CometLogger(offline=True, save_dir=str(tmp_path), project_name="old", experiment_name="run", **QUIET)
    assert logger.save_dir == str(tmp_path) and logger.name == "old"
    experiment = logger.experiment
    assert type(experiment).__name__ == "OfflineExperiment" and experiment.get_name() == "run"
    experiment.end()
    assert archive(str(tmp_path))[1]["project_name"] == "old"


def test_without_comet_ml_the_error_says_what_to_install(monkeypatch):
    from lightray.loggers import CometLogger

    monkeypatch.setitem(sys.modules, "comet_ml", None)
    with pytest.raises(MisconfigurationError, match=r"pip install 'lightray\[comet\]'"):
        CometLogger(online=False)

"""WandbLogger: an offline run of the same program in lightray and in Lightning writes the same run.

Offline, wandb keeps a run in ``<save_dir>/wandb/offline-run-<time>-<id>/``: ``run-<id>.wandb`` (the record log
``wandb sync`` uploads: config, history rows, summary updates, metric definitions), ``files/``, ``logs/`` and
``tmp/``. ``files/config.yaml`` and ``wandb-summary.json`` are written only by an online run (or by the server
after a sync), so these tests read the record log itself, with wandb's protobuf messages.
"""

from __future__ import annotations

import glob
import json
import math
import os
import pickle
import sys
import time
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray
from lightray.errors import MisconfigurationError

wandb = pytest.importorskip("wandb", reason="WandbLogger needs wandb (the wandb extra: pip install 'lightray[wandb]')")


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path, monkeypatch):
    """Offline and quiet, everything under tmp_path; every run finished and wandb's service stopped after."""
    home = tmp_path / "wandb_home"
    for var, sub in [("WANDB_DIR", "dir"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_DATA_DIR", "data"), ("WANDB_ARTIFACT_DIR", "artifacts")]:  # fmt: skip
        monkeypatch.setenv(var, str(home / sub))
    quiet = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off", "WANDB_DISABLE_CODE": "true",
             "WANDB_DISABLE_GIT": "true", "WANDB_PROJECT": ""}  # fmt: skip
    for var, value in quiet.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    wandb.finish()
    wandb.teardown()  # the wandb-core process of this test's runs


def records(run_folder: str) -> list[Any]:
    """The records of ``run-<id>.wandb``: a LevelDB-style log (32 KiB blocks of checksum, length, type, data)
    after a 7-byte ``:W&B`` header, each record a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(os.path.join(run_folder, "run-*.wandb"))
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    out, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a record header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            out.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return out


def _items(updates: Any) -> dict[str, Any]:
    """Record items as a dict; a nested key (a logged table's fields) as nested dicts."""
    out: dict[str, Any] = {}
    for item in updates:
        *parents, last = list(item.nested_key) or [item.key]
        place = out
        for parent in parents:
            place = place.setdefault(parent, {})
        place[last] = json.loads(item.value_json)
    return out


def read_run(run_folder: str, finished: bool = True) -> dict[str, Any]:
    """What an offline run holds: config, history rows and the final summary (wandb's own ``_`` keys left out),
    the metric definitions, whether it was finished. wandb's service writes the file after ``finish`` returns:
    a finished run is read again until its exit record is there."""
    deadline = time.monotonic() + 20
    while True:
        try:
            found = _read_run(run_folder)
        except Exception:  # a record still being written
            found = None
        if (found is not None and found["finished"] >= finished) or time.monotonic() > deadline:
            return found or _read_run(run_folder)
        time.sleep(0.05)


def _read_run(run_folder: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history, metrics, finished = [], [], False
    for record in records(run_folder):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config.update(_items(record.run.config.update))
        elif kind == "config":
            config.update(_items(record.config.update))
        elif kind == "history":
            history.append(_items(record.history.item))
        elif kind == "summary":
            summary.update(_items(record.summary.update))
        elif kind == "metric":
            m = record.metric
            metrics.append((m.name or m.glob_name, m.step_metric, m.options.step_sync))
        elif kind == "exit":
            finished = True
    mine = lambda row: {k: v for k, v in row.items() if not k.startswith("_")}  # noqa: E731
    return {"config": mine(config), "history": [mine(h) for h in history], "summary": mine(summary),
            "metrics": metrics, "finished": finished}  # fmt: skip


def offline_runs(save_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(save_dir, "wandb", "offline-run-*")))


def program(pl: Any, save_dir: str) -> dict[str, Any]:
    """A Lightning-style script: hyperparameters, train/val logging, a checkpoint, an offline WandbLogger."""
    from importlib import import_module

    loggers = import_module(f"{pl.__name__}.loggers")

    class Regressor(pl.LightningModule):
        def __init__(self, hidden: int = 8, lr: float = 0.05, activation: str = "tanh") -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 1))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    data = TensorDataset(x, x.sum(1, keepdim=True) + 0.1 * torch.randn(64, 1, generator=g))
    pl.seed_everything(7)
    model = Regressor()
    logger = loggers.WandbLogger(offline=True, save_dir=save_dir, project="digits")
    trainer = pl.Trainer(max_epochs=2, log_every_n_steps=2, logger=logger, accelerator="cpu", enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=8), DataLoader(data, batch_size=16))
    run = logger.experiment
    found = {"run_type": type(run).__name__, "version": logger.version, "run_id": run.id, "name": logger.name,
             "save_dir": logger.save_dir, "log_dir": trainer.log_dir, "run_dir": os.path.dirname(run.dir),
             "checkpoint": os.path.relpath(trainer.checkpoint_callback.best_model_path, save_dir)}  # fmt: skip
    run.finish()
    return found


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5)
    return a == b


def test_offline_run_same_as_lightning(tmp_path):
    pl = pytest.importorskip("pytorch_lightning", reason="the comparison needs the dev extra (pytorch-lightning)")
    ours = program(lightray, str(tmp_path / "lightray"))
    theirs = program(pl, str(tmp_path / "lightning"))

    for found, root in [(ours, tmp_path / "lightray"), (theirs, tmp_path / "lightning")]:
        assert found["run_type"] == "Run" and found["version"] == found["run_id"] and found["name"] == "digits"
        assert found["save_dir"] == found["log_dir"] == str(root)  # Lightning's trainer.log_dir: the save_dir
        (run_dir,) = offline_runs(str(root))
        assert found["run_dir"] == run_dir and run_dir.endswith(f"-{found['run_id']}")
        assert sorted(os.listdir(run_dir)) == ["files", "logs", f"run-{found['run_id']}.wandb", "tmp"]
        # checkpoints under <save_dir>/<project>/<run id>/checkpoints
        assert found["checkpoint"] == os.path.join("digits", found["run_id"], "checkpoints", "epoch=1-step=16.ckpt")

    ours_run = read_run(offline_runs(str(tmp_path / "lightray"))[0])
    theirs_run = read_run(offline_runs(str(tmp_path / "lightning"))[0])
    assert ours_run["config"] == theirs_run["config"] == {"hidden": 8, "lr": 0.05, "activation": "tanh"}
    assert ours_run["metrics"] == theirs_run["metrics"] == [("trainer/global_step", "", False),
                                                            ("*", "trainer/global_step", True)]  # fmt: skip
    assert [sorted(row) for row in ours_run["history"]] == [sorted(row) for row in theirs_run["history"]]
    assert {"train_loss_step", "train_loss_epoch", "val_loss", "epoch", "trainer/global_step"} == {
        key for row in ours_run["history"] for key in row
    }
    steps = [row["trainer/global_step"] for row in ours_run["history"] if "train_loss_step" in row]
    assert steps == [1, 3, 5, 7, 9, 11, 13, 15]
    assert _close(ours_run["history"], theirs_run["history"])
    assert _close(ours_run["summary"], theirs_run["summary"]), (ours_run["summary"], theirs_run["summary"])
    assert ours_run["summary"]["trainer/global_step"] == 15 and ours_run["finished"] and theirs_run["finished"]


def test_tables_images_text_and_prefix(tmp_path):
    import numpy as np

    from lightray.loggers import WandbLogger

    logger = WandbLogger(offline=True, save_dir=tmp_path, project="media", prefix="fold1", name="first")
    assert logger.experiment.name == "first" and wandb.run is logger.experiment
    logger.log_hyperparams({"act": torch.nn.ReLU, "fn": lambda: 3, "obj": object(), "n": 2})
    logger.log_metrics({"loss": 0.5}, step=4)
    logger.log_table("table", columns=["a", "b"], data=[[1, "x"], [2, "y"]], step=4)
    logger.log_text("text", columns=["said"], data=[["hi"]])
    logger.log_image("pictures", [np.zeros((8, 8, 3), dtype=np.uint8)] * 2, step=5, caption=["one", "two"])
    with pytest.raises(ValueError, match="Expected 2 items but only found 1 for caption"):
        logger.log_image("pictures", [np.zeros((8, 8, 3), dtype=np.uint8)] * 2, caption=["one"])
    logger.experiment.finish()

    run = read_run(offline_runs(str(tmp_path))[0])
    assert run["config"]["act"] == "ReLU" and run["config"]["fn"] == 3 and run["config"]["n"] == 2
    assert run["config"]["obj"].startswith("<object object")
    assert [sorted(row) for row in run["history"]] == [
        ["fold1-loss", "trainer/global_step"], ["fold1-table", "trainer/global_step"],
        ["fold1-text", "trainer/global_step"],  # step_sync: the last step, as a row logged without one gets
        ["fold1-pictures", "trainer/global_step"]]  # fmt: skip
    assert run["history"][1]["fold1-table"]["_type"] == "table-file"
    assert run["history"][3]["fold1-pictures"]["count"] == 2


def test_an_active_run_is_reused(tmp_path):
    from lightray.loggers import WandbLogger

    active = wandb.init(dir=str(tmp_path), project="mine")
    with pytest.warns(UserWarning, match="already in progress"):
        assert WandbLogger(save_dir=tmp_path).experiment is active
    active.finish()


def test_a_copy_in_another_process_resumes_the_same_run_and_finishes_it(tmp_path):
    """As on a Ray Train worker: the driver's logger is pickled without creating a run; the copy creates it with the
    id the driver's logger now reports, and finishes it at the end of the stage (the worker goes away with it)."""
    from lightray.loggers import WandbLogger

    driver = WandbLogger(offline=True, save_dir=tmp_path, project="ray")
    worker = pickle.loads(pickle.dumps(driver))
    assert wandb.run is None and driver.version is not None and worker.version == driver.version
    assert wandb.run is None  # known ids create nothing
    worker.log_metrics({"loss": 1.0}, step=1)
    assert worker.experiment.id == driver.version
    worker.finalize("success")
    assert wandb.run is None
    run = read_run(offline_runs(str(tmp_path))[0])
    assert run["finished"] and run["history"] == [{"loss": 1.0, "trainer/global_step": 1}]
    assert pickle.loads(pickle.dumps(driver)).version == driver.version  # every stage: the same run


def test_in_this_process_the_run_stays_open_after_a_stage(tmp_path):
    from lightray.loggers import WandbLogger

    logger = WandbLogger(offline=True, save_dir=tmp_path)
    run = logger.experiment
    logger.finalize("success")
    assert wandb.run is run and logger.experiment is run  # as in Lightning: trainer.test after fit logs to it
    run.finish()


def test_log_model_is_refused_with_the_reason():
    from lightray.loggers import WandbLogger

    for value in (True, "all"):
        with pytest.raises(MisconfigurationError, match="does not tell loggers about saved checkpoints"):
            WandbLogger(offline=True, log_model=value)


def test_without_wandb_the_error_says_what_to_install(monkeypatch):
    from lightray.loggers import WandbLogger

    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MisconfigurationError, match=r"pip install 'lightray\[wandb\]'"):
        WandbLogger(offline=True)

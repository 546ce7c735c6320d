"""DeviceStatsMonitor: the metric names and steps Lightning's writes to metrics.csv, its error without a logger,
and ``cpu_stats=False``."""

from __future__ import annotations

import csv
import glob
import os

import pytest
import torch

import lightray
import lightray.demos

lightning = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")
import pytorch_lightning.demos  # noqa: E402
from pytorch_lightning.utilities.exceptions import MisconfigurationException  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Lightning's hints (num_workers, few batches)

PREFIX = "DeviceStatsMonitor."


def _run(framework, demos, tmp_path, accelerator="cpu", cpu_stats=None, test=True):
    """BoringModel: 1 epoch of 6 batches with 3 validation batches (and 2 sanity ones), then a test of 3
    batches; logged every 2 steps to a CSVLogger. Returns the rows of metrics.csv (none if it was not written)."""
    framework.seed_everything(0)
    trainer = framework.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=1,
        limit_train_batches=6,
        limit_val_batches=3,
        limit_test_batches=3,
        log_every_n_steps=2,
        logger=framework.loggers.CSVLogger(tmp_path),
        callbacks=[framework.callbacks.DeviceStatsMonitor(cpu_stats=cpu_stats)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = demos.BoringModel()
    trainer.fit(model)
    if test:
        trainer.test(model, verbose=False)
    paths = glob.glob(os.path.join(str(tmp_path), "lightning_logs", "version_*", "metrics.csv"))
    if not paths:  # nothing logged: BoringModel logs no metric of its own
        return []
    with open(paths[0]) as f:
        return list(csv.DictReader(f))


def _stat_cells(rows) -> set[tuple[str, int]]:
    """(metric name, step) of every DeviceStatsMonitor value written."""
    return {(key, int(row["step"])) for row in rows for key, value in row.items() if key.startswith(PREFIX) and value}


def _names(cells) -> set[str]:
    return {name for name, _ in cells}


def test_cpu_stats_have_lightnings_names_at_lightnings_steps(tmp_path):
    theirs = _stat_cells(_run(lightning, pytorch_lightning.demos, tmp_path / "lightning"))
    ours = _stat_cells(_run(lightray, lightray.demos, tmp_path / "lightray"))
    hooks = {name.split("/")[0] for name in _names(theirs)}
    stages = ("train", "validation", "test")  # validation: in the sanity check (step 0) and after the epoch
    assert hooks == {f"{PREFIX}on_{stage}_batch_{when}" for stage in stages for when in ("start", "end")}
    assert {name.split("/")[1] for name in _names(theirs)} == {"cpu_percent", "cpu_vm_percent", "cpu_swap_percent"}
    assert ours == theirs


def test_the_values_are_numbers_in_percent(tmp_path):
    rows = _run(lightray, lightray.demos, tmp_path, test=False)
    values = [float(row[key]) for row in rows for key in row if key.startswith(PREFIX) and row[key]]
    assert values and all(0.0 <= value <= 100.0 for value in values)


def test_without_a_logger_fit_fails_as_in_lightning(tmp_path):
    def fit(framework, demos, error):
        trainer = framework.Trainer(
            accelerator="cpu", max_epochs=1, limit_train_batches=2, logger=False, default_root_dir=str(tmp_path),
            callbacks=[framework.callbacks.DeviceStatsMonitor()], enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False,
        )  # fmt: skip
        with pytest.raises(error, match=r"Cannot use `DeviceStatsMonitor` callback with `Trainer\(logger=False\)`"):
            trainer.fit(demos.BoringModel())

    fit(lightning, pytorch_lightning.demos, MisconfigurationException)
    fit(lightray, lightray.demos, lightray.MisconfigurationError)


def test_cpu_stats_false_logs_nothing_on_the_cpu(tmp_path):
    assert not _stat_cells(_run(lightning, pytorch_lightning.demos, tmp_path / "lightning", cpu_stats=False))
    assert not _stat_cells(_run(lightray, lightray.demos, tmp_path / "lightray", cpu_stats=False))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cpu_stats", [None, True])
def test_cuda_memory_stats_have_lightnings_names_at_lightnings_steps(tmp_path, cpu_stats):
    theirs = _stat_cells(_run(lightning, pytorch_lightning.demos, tmp_path / "lightning", "gpu", cpu_stats))
    ours = _stat_cells(_run(lightray, lightray.demos, tmp_path / "lightray", "gpu", cpu_stats))
    stats = {name.split("/")[1] for name in _names(ours)}
    assert "allocated_bytes.all.current" in stats
    assert ("cpu_percent" in stats) == bool(cpu_stats)
    assert ours == theirs

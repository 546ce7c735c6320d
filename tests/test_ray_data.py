"""Ray Data as the Trainer's data: in-process, and sharded across Ray Train workers (one 2-CPU cluster)."""

from __future__ import annotations

import os

import pytest
import ray
import torch
from data_helpers import IdRecorder, RowData, RowModel, rows, rows_as_tensors
from ray_helpers import KillOnce
from torch.utils.data import DataLoader

import lightray as pl
from lightray.data import RayDataLoader
from lightray.errors import MisconfigurationError
from lightray.strategies import Strategy

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # Ray Data's tasks unpickle the test's preprocessing functions: they import this folder's modules
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {"env_vars": {"PYTHONPATH": tests}}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", runtime_env=env)
    yield
    ray.shutdown()


def quiet_trainer(**kwargs) -> pl.Trainer:
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    return pl.Trainer(enable_progress_bar=False, enable_model_summary=False, **kwargs)


class StepsAtValidation(pl.Callback):
    def __init__(self, steps: list[int]) -> None:
        self.steps = steps

    def on_validation_end(self, trainer, pl_module):
        self.steps.append(trainer.global_step)


# ---------------------------------------------------------------------------------------------- in-process
def test_in_process_training_equals_a_torch_dataloader(tmp_path):
    on_ray_data = RowModel()
    trainer = quiet_trainer(max_epochs=2, deterministic=True, default_root_dir=tmp_path)
    trainer.fit(on_ray_data, train_dataloaders=RayDataLoader(rows(96), batch_size=16))

    on_torch = RowModel()
    reference = quiet_trainer(max_epochs=2, deterministic=True, default_root_dir=tmp_path)
    reference.fit(on_torch, train_dataloaders=DataLoader(rows_as_tensors(96), batch_size=16))

    assert trainer.num_training_batches == reference.num_training_batches == 6
    assert trainer.global_step == reference.global_step == 12
    for a, b in zip(on_ray_data.parameters(), on_torch.parameters()):
        torch.testing.assert_close(a, b)


def test_known_lengths_allow_fractions_and_a_bare_dataset_works(tmp_path):
    module = RowModel()
    validations, planned_steps = [], []
    configure = module.configure_optimizers
    module.configure_optimizers = lambda: planned_steps.append(module.trainer.estimated_stepping_batches) or configure()
    trainer = quiet_trainer(
        max_epochs=1,
        val_check_interval=0.5,
        limit_train_batches=0.5,
        num_sanity_val_steps=0,
        callbacks=[StepsAtValidation(validations)],
        default_root_dir=tmp_path,
    )
    # 128 rows in batches of 8 = 16 batches; half of them; validation every half of those
    loader = RayDataLoader(rows(128), batch_size=8)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=rows(40, start=500))  # a bare Dataset: batch 256
    assert trainer.num_training_batches == 8
    assert planned_steps == [8]
    assert validations == [4, 8], validations
    assert trainer.num_val_batches == [1]


def test_unknown_length_gets_a_clear_error_for_fractions(tmp_path):
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=0.5, default_root_dir=tmp_path)
    with pytest.raises(MisconfigurationError, match="num_rows"):
        trainer.fit(RowModel(), train_dataloaders=RayDataLoader(rows(64), batch_size=8, num_rows=None))
    with pytest.raises(MisconfigurationError, match="num_rows=-3"):
        RayDataLoader(rows(8), num_rows=-3)


def test_each_epoch_is_reshuffled_with_the_seed(tmp_path):
    def orders(seed: int) -> list[list[int]]:
        recorder = IdRecorder()
        trainer = quiet_trainer(max_epochs=3, callbacks=[recorder], default_root_dir=tmp_path)
        trainer.fit(RowModel(), train_dataloaders=RayDataLoader(rows(48), batch_size=8, shuffle=True, seed=seed))
        return [recorder.seen[str(epoch)][0] for epoch in range(3)]

    first, again, other = orders(seed=1), orders(seed=1), orders(seed=2)
    assert all(sorted(order) == list(range(48)) for order in first)
    assert first[0] != first[1] != first[2]
    assert first == again
    assert first != other


# ---------------------------------------------------------------------------------------------- on Ray workers
def test_two_workers_read_disjoint_equal_shards_and_validate_on_all_rows(tmp_path):
    recorder = IdRecorder()
    module = RowModel()
    trainer = quiet_trainer(
        max_epochs=2, num_workers=2, callbacks=[recorder], storage_path=str(tmp_path / "ray"), name="shards"
    )
    trainer.fit(module, datamodule=RowData(train_rows=64, val_rows=32, batch_size=8))

    for epoch in ("0", "1"):
        rank0, rank1 = recorder.seen[epoch]
        assert len(rank0) == len(rank1) == 32  # equal shards: no rank waits on the other
        assert sorted(rank0 + rank1) == list(range(64))  # disjoint, and every row once
    assert recorder.seen["0"] != recorder.seen["1"]  # reshuffled between epochs

    # validation was split across the ranks and reduced: it equals one process validating every row
    local = quiet_trainer(default_root_dir=tmp_path)
    (result,) = local.validate(module, dataloaders=RayDataLoader(rows(32, start=10_000), batch_size=8))
    assert trainer.callback_metrics["val_loss"].item() == pytest.approx(result["val_loss"], rel=1e-5)


def test_killed_worker_resumes_mid_epoch_without_repeating_or_skipping_rows(tmp_path):
    marker = str(tmp_path / "killed")
    recorder = IdRecorder()
    trainer = quiet_trainer(
        max_epochs=2,
        num_workers=2,
        deterministic=True,
        max_failures=1,
        enable_checkpointing=True,
        callbacks=[recorder, pl.callbacks.ModelCheckpoint(every_n_train_steps=3, save_top_k=-1), KillOnce(marker, 5)],
        storage_path=str(tmp_path / "ray"),
        name="killed",
        default_root_dir=tmp_path,
    )
    trainer.fit(RowModel(), datamodule=RowData(train_rows=64, val_rows=16, batch_size=8))

    assert os.path.exists(marker), "rank 1 was never killed"
    assert trainer.global_step == 8
    for epoch in ("0", "1"):
        rank0, rank1 = recorder.seen[epoch]
        assert sorted(rank0 + rank1) == list(range(64)), f"epoch {epoch} repeated or skipped rows"


def test_workers_that_leave_no_cpu_for_ray_data_fail_fast(tmp_path):
    trainer = quiet_trainer(
        max_epochs=1, num_workers=2, resources_per_worker={"CPU": 1}, storage_path=str(tmp_path), name="full"
    )
    with pytest.raises(MisconfigurationError, match="Ray Data has no CPU"):
        trainer.fit(RowModel(), train_dataloaders=rows(16))
    # from a datamodule the datasets only exist on the workers: they check, and the error reaches the driver
    with pytest.raises(MisconfigurationError, match="Ray Data has no CPU"):
        trainer.fit(RowModel(), datamodule=RowData(train_rows=16, val_rows=16, batch_size=8))


class TwoRanks(Strategy):
    """Rank 0 of 2, without a process group: enough to see how a loader divides its rows."""

    @property
    def world_size(self) -> int:
        return 2


def test_split_divides_rows_among_ranks_and_can_be_turned_off():
    split = RayDataLoader(rows(64), batch_size=8).bind(TwoRanks())
    whole = RayDataLoader(rows(64), batch_size=8, split=False).bind(TwoRanks())
    assert (len(split), len(whole)) == (4, 8)
    assert len(list(whole)) == 8  # without the split this rank reads every row itself

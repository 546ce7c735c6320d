"""Sharded training (``strategy="fsdp"``, torch's FSDP2) on Ray Train workers, on a real local Ray cluster with
CPU workers (gloo): the same losses as DDP, about half the parameters per worker, checkpoints that load anywhere."""

from __future__ import annotations

import os

import pytest
import torch
from ray_helpers import Block, KillOnce, TinyTransformer

import lightray as pl

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, log_every_n_steps=1)


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def _fit(tmp_path, name, strategy, **kwargs):
    pl.seed_everything(0)
    model = TinyTransformer()
    trainer = pl.Trainer(max_epochs=2, num_workers=2, strategy=strategy, storage_path=str(tmp_path / "runs"),
                         name=name, default_root_dir=tmp_path, **QUIET, **kwargs)  # fmt: skip
    trainer.fit(model)
    losses = [row["train_loss"] for row in trainer.logged_metrics_history if "train_loss" in row]
    return model, trainer, losses


def test_fsdp_trains_as_ddp_with_half_the_parameters_per_worker_and_a_checkpoint_that_loads_anywhere(tmp_path):
    _, ddp_trainer, ddp_losses = _fit(tmp_path, "ddp", "ddp")
    strategy = pl.strategies.FSDPStrategy(auto_wrap_policy={Block})
    model, trainer, losses = _fit(tmp_path, "fsdp", strategy, enable_checkpointing=True)
    assert trainer.global_step == ddp_trainer.global_step == 8  # 64 sequences / 8 / 2 workers, 2 epochs
    assert len(losses) == len(ddp_losses) == 8
    assert losses == pytest.approx(ddp_losses, abs=1e-4)  # FSDP changes where the sums happen, not the math
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    held, ddp_held = float(trainer.callback_metrics["param_bytes"]), float(ddp_trainer.callback_metrics["param_bytes"])
    assert ddp_held == full and 0.45 * full <= held <= 0.55 * full

    # the checkpoint holds the full weights in Lightning's format: a plain process loads it without FSDP
    best = trainer.checkpoint_callback.best_model_path
    loaded = TinyTransformer.load_from_checkpoint(best)
    for key, value in model.state_dict().items():  # the driver's module: rank 0's gathered weights
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_fsdp_without_workers_says_how_to_get_them():
    with pytest.raises(pl.MisconfigurationError, match=r"strategy='fsdp' without workers: .* add num_workers=N"):
        pl.Trainer(strategy="fsdp")


def test_a_policy_that_matches_nothing_is_named(tmp_path):
    strategy = pl.strategies.FSDPStrategy(auto_wrap_policy={torch.nn.Conv2d})
    with pytest.raises(Exception, match=r"matches no submodule of TinyTransformer"):
        _fit(tmp_path, "nothing", strategy)


def test_a_killed_fsdp_worker_resumes_to_the_uninterrupted_weights(tmp_path):
    strategy = pl.strategies.FSDPStrategy(auto_wrap_policy={Block})
    reference, _, _ = _fit(tmp_path, "whole", strategy)
    marker = str(tmp_path / "killed")
    every_3 = pl.callbacks.ModelCheckpoint(every_n_train_steps=3, save_top_k=-1)
    resumed, trainer, _ = _fit(tmp_path, "killed", strategy, callbacks=[every_3, KillOnce(marker, step=5)],
                               max_failures=1)  # fmt: skip
    assert os.path.exists(marker)  # rank 1 was SIGKILLed after step 5; the run went on from the step-3 checkpoint
    assert trainer.global_step == 8
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key

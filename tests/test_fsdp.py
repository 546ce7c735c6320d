"""Sharded training (``strategy="fsdp"``, torch's FSDP2) on Ray Train workers, on a real local Ray cluster with
CPU workers (gloo): the same losses as DDP, about half the parameters per worker, checkpoints that load anywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from ray_helpers import Block, KillOnce, ManualTinyTransformer, MetaInitTransformer, TinyTransformer

import lightray as pl

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, log_every_n_steps=1)


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """The DDP run the FSDP runs are compared with (TinyTransformer, 2 epochs, 8 steps)."""
    _, trainer, losses = _fit(tmp_path_factory.mktemp("ddp"), "ddp", "ddp")
    return trainer, losses


def _fit(tmp_path, name, strategy, max_epochs=2, model=TinyTransformer, **kwargs):
    pl.seed_everything(0)
    model = model()
    trainer = pl.Trainer(max_epochs=max_epochs, num_workers=2, strategy=strategy, storage_path=str(tmp_path / "runs"),
                         name=name, default_root_dir=tmp_path, **QUIET, **kwargs)  # fmt: skip
    trainer.fit(model)
    losses = [row["train_loss"] for row in trainer.logged_metrics_history if "train_loss" in row]
    return model, trainer, losses


def test_fsdp_trains_as_ddp_with_half_the_parameters_per_worker_and_a_checkpoint_that_loads_anywhere(tmp_path, ddp_run):
    ddp_trainer, ddp_losses = ddp_run
    strategy = pl.strategies.FSDPStrategy(auto_wrap_policy={Block})
    model, trainer, losses = _fit(tmp_path, "fsdp", strategy, enable_checkpointing=True)
    assert trainer.global_step == ddp_trainer.global_step == 8  # 64 sequences / 8 / 2 workers, 2 epochs
    assert len(losses) == len(ddp_losses) == 8
    assert losses == pytest.approx(ddp_losses, abs=1e-4)  # FSDP changes where the sums happen, not the math
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    held, ddp_held = float(trainer.callback_metrics["param_bytes"]), float(ddp_trainer.callback_metrics["param_bytes"])
    assert ddp_held == full and 0.45 * full <= held <= 0.55 * full

    # a sharded checkpoint: a folder with each worker's shards; consolidated into one file, it loads anywhere
    best = trainer.checkpoint_callback.best_model_path
    assert sorted(n for n in os.listdir(best) if n.endswith(".distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    with pytest.raises(Exception, match="lightray consolidate"):
        TinyTransformer.load_from_checkpoint(best)
    single = str(tmp_path / "model.ckpt")
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "lightray"), "consolidate", best, single],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = TinyTransformer.load_from_checkpoint(single)
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
    killer = KillOnce(marker, step=6, in_save=True)
    resumed, trainer, _ = _fit(tmp_path, "killed", strategy, callbacks=[every_3, killer], max_failures=1)
    # rank 1 was SIGKILLed while the step-6 checkpoint was being saved: that save was never registered, the run went
    # on from the step-3 checkpoint, and saved step 6 again over what the cut save had left
    assert os.path.exists(marker) and trainer.global_step == 8
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_a_run_saved_by_two_workers_resumes_on_one_and_full_checkpoints_round_trip(tmp_path):
    sharded = pl.strategies.FSDPStrategy(auto_wrap_policy={Block})
    _fit(tmp_path, "elastic", sharded)  # 2 epochs on 2 workers: 8 steps, a sharded checkpoint per epoch
    pl.seed_everything(0)
    model = TinyTransformer()
    trainer = pl.Trainer(max_epochs=3, num_workers=1, strategy=sharded, storage_path=str(tmp_path / "runs"),
                         name="elastic", default_root_dir=tmp_path, **QUIET)  # fmt: skip
    trainer.fit(model)  # the same run: resumes from its last checkpoint, the shards resharded onto 1 worker
    # from scratch it would be 24 steps (8 a epoch on one worker); resumed, the third epoch keeps the global batch
    # (2 batches of 8 accumulated per step): 4 steps
    assert trainer.global_step == 8 + 4

    full = pl.strategies.FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full")
    model, trainer, _ = _fit(tmp_path, "full", full)
    loaded = TinyTransformer.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)  # one file
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_clipping_accumulation_and_top_k_sharded_checkpoints(tmp_path):
    settings = dict(gradient_clip_val=0.5, accumulate_grad_batches=2, max_epochs=3)
    _, _, ddp_losses = _fit(tmp_path, "ddp-clip", "ddp", **settings)
    top2 = pl.callbacks.ModelCheckpoint(save_top_k=2, monitor="val_loss")
    strategy = pl.strategies.FSDPStrategy(auto_wrap_policy={Block})
    _, trainer, losses = _fit(tmp_path, "fsdp-clip", strategy, callbacks=[top2], enable_checkpointing=True,
                              **settings)  # fmt: skip
    assert trainer.global_step == 6 and len(losses) == len(ddp_losses) == 6  # 4 batches an epoch, 2 per step
    assert losses == pytest.approx(ddp_losses, abs=1e-4)  # clipping the sharded gradients clips the same norm
    kept = sorted(name for name in os.listdir(tmp_path / "runs" / "fsdp-clip") if name.endswith(".ckpt"))
    assert len(kept) == 2 and os.path.basename(top2.best_model_path) in kept  # of the 3 epochs' saves: the best 2
    for name in kept:
        assert sorted(n for n in os.listdir(tmp_path / "runs" / "fsdp-clip" / name) if n.endswith(".distcp")) == [
            "__0_0.distcp",
            "__1_0.distcp",
        ]


def test_activation_checkpointing_keeps_the_losses_and_bf16_mixed_gathers_bf16_parameters(tmp_path, ddp_run):
    ddp_trainer, ddp_losses = ddp_run
    recompute = pl.strategies.FSDPStrategy(auto_wrap_policy={Block}, activation_checkpointing_policy={Block})
    _, trainer, losses = _fit(tmp_path, "recompute", recompute)
    assert losses == pytest.approx(ddp_losses, abs=1e-4)  # recomputing in backward changes no number
    # what autograd keeps from forward: only the blocks' inputs, not their insides
    saved = float(trainer.callback_metrics["saved_bytes"])
    assert saved < 0.5 * float(ddp_trainer.callback_metrics["saved_bytes"])

    _, trainer, losses = _fit(tmp_path, "bf16", pl.strategies.FSDPStrategy(auto_wrap_policy={Block}),
                              precision="bf16-mixed")  # fmt: skip
    assert float(trainer.callback_metrics["computes_in_bf16"]) == 1.0  # the gathered parameters are bf16
    assert float(ddp_trainer.callback_metrics["computes_in_bf16"]) == 0.0
    assert losses == pytest.approx(ddp_losses, rel=3e-2) and losses != ddp_losses


def test_manual_optimization_with_two_optimizers_gives_the_ddp_losses(tmp_path):
    _, _, ddp_losses = _fit(tmp_path, "manual-ddp", "ddp", model=ManualTinyTransformer)
    strategy = pl.strategies.FSDPStrategy(auto_wrap_policy={Block})
    _, trainer, losses = _fit(tmp_path, "manual-fsdp", strategy, model=ManualTinyTransformer)
    assert len(losses) == len(ddp_losses) == 8
    assert losses == pytest.approx(ddp_losses, abs=1e-4)
    assert losses[-1] < losses[0]


def test_meta_device_layers_get_their_shards_and_a_too_large_full_state_is_refused(tmp_path):
    strategy = pl.strategies.FSDPStrategy(auto_wrap_policy={torch.nn.Sequential})
    model, trainer, losses = _fit(tmp_path, "meta", strategy, model=MetaInitTransformer, max_epochs=3)
    assert losses[-1] < losses[0] - 0.2  # initialised (reset_parameters), it trains
    weight = model.blocks[0][0].weight  # the driver's module: built on the meta device, given rank 0's weights
    assert not weight.is_meta and not torch.equal(weight[:32], weight[32:])  # the two ranks' shards differ
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    # half, plus the other half of the root's (embedding, head), gathered while the step that measures runs
    assert 0.45 * full <= float(trainer.callback_metrics["param_bytes"]) <= 0.6 * full

    trainer = pl.Trainer(max_epochs=1, num_workers=2, strategy="fsdp", storage_path=str(tmp_path / "runs"),
                         name="empty-init", default_root_dir=tmp_path, **QUIET)  # fmt: skip
    with trainer.init_module(empty_init=True):
        model = MetaInitTransformer(in_init=True)
    assert model.head.weight.is_meta  # nothing allocated on the driver
    trainer.fit(model)
    assert not model.head.weight.is_meta and torch.isfinite(trainer.callback_metrics["train_loss"])

    refused = pl.strategies.FSDPStrategy(state_dict_type="full", full_state_memory_budget=2**10)
    with pytest.raises(Exception, match=r"a full checkpoint of this model holds .* over the memory budget"):
        _fit(tmp_path, "budget", refused)


def test_the_learning_rate_finder_under_fsdp_searches_and_puts_the_shards_back_as_under_ddp(tmp_path):
    runs = {}
    for strategy in ("ddp", pl.strategies.FSDPStrategy(auto_wrap_policy={Block})):
        finder = pl.callbacks.LearningRateFinder(num_training_steps=16, early_stop_threshold=None)  # over 4 epochs
        model, trainer, _ = _fit(tmp_path, f"finder-{strategy}"[:12], strategy, callbacks=[finder], max_epochs=5)
        runs[str(strategy)[:4]] = model, float(trainer.callback_metrics["lr"])
    (ddp_model, ddp_lr), (model, lr) = runs.values()
    assert lr == pytest.approx(ddp_lr) and lr != pytest.approx(3e-3)  # the search's suggestion replaced the rate
    for key, value in ddp_model.state_dict().items():  # the trial's updates undone on every shard, then the fit
        torch.testing.assert_close(model.state_dict()[key], value, atol=1e-4, rtol=0)

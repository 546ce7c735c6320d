"""Lightning's surface that real programs use: strategy names, Timer durations (comparisons with pytorch-lightning
where Lightning has the feature)."""

from __future__ import annotations

import datetime
import time

import pytest
import torch

import lightray as pl
from lightray.strategies import DDPStrategy
from lightray.testing import BoringModel

lightning = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")


def _fit_weights(strategy, quiet) -> dict[str, torch.Tensor]:
    pl.seed_everything(0)
    model = BoringModel()
    pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=0, strategy=strategy, **quiet).fit(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "strategy",
    [
        "ddp",
        "ddp_spawn",
        "ddp_find_unused_parameters_true",
        "single_device",
        DDPStrategy(find_unused_parameters=True, static_graph=True),
    ],  # fmt: skip
    ids=str,
)
def test_lightnings_ddp_strategy_names_run_in_process_on_one_device(strategy, quiet):
    # one device: nothing to distribute; the result is that of strategy="auto"
    expected = _fit_weights("auto", quiet)
    for key, value in _fit_weights(strategy, quiet).items():
        assert torch.equal(value, expected[key])


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ("deepspeed", "strategy='deepspeed': DeepSpeed is not supported; use strategy='ddp'"),
        ("deepspeed_stage_2", "DeepSpeed is not supported; use strategy='ddp'"),
        ("fsdp", "strategy='fsdp': sharded training (FSDP) is not supported yet; use strategy='ddp'"),
        ("dp", "DataParallel is not supported"),
        ("horovod", "strategy='horovod': unknown strategy. Use 'auto' or 'ddp'"),
    ],  # fmt: skip
)
def test_unsupported_strategies_name_the_alternative(strategy, message, quiet):
    with pytest.raises(pl.MisconfigurationError) as info:
        pl.Trainer(strategy=strategy, **quiet)
    assert message in str(info.value)


def test_a_lightning_strategy_object_is_named_with_the_alternative(quiet):
    with pytest.raises(pl.MisconfigurationError, match=r"strategy=.*DeepSpeed is not supported; use strategy='ddp'"):
        pl.Trainer(strategy=type("DeepSpeedStrategy", (), {})(), **quiet)


@pytest.mark.parametrize(
    "duration", ["00:00:01:00", "01:02:03:04", datetime.timedelta(minutes=5), {"hours": 1, "minutes": 30}]
)
def test_timer_takes_lightnings_duration_forms(duration):
    ours, theirs = pl.callbacks.Timer(duration=duration), lightning.callbacks.Timer(duration=duration)
    assert ours.time_remaining() == theirs.time_remaining() > 0


def test_timer_with_a_duration_string_stops_training(quiet):
    class Slow(BoringModel):
        def training_step(self, batch, batch_idx):
            time.sleep(0.4)
            return super().training_step(batch, batch_idx)

    trainer = pl.Trainer(max_epochs=5, callbacks=[pl.callbacks.Timer(duration="00:00:00:01")], limit_val_batches=0,
                         **quiet)  # fmt: skip
    trainer.fit(Slow())
    assert 3 <= trainer.global_step <= 4  # one second of 0.4 s steps, checked after each step


def test_a_bad_duration_names_the_forms():
    with pytest.raises(pl.MisconfigurationError, match=r"Timer\(duration=...\): '1 hour' is not a duration; use "):
        pl.callbacks.Timer(duration="1 hour")


# Lightning's public names that lightray claims, by module (``lightning.pytorch.<module>`` -> ``lightray.<module>``)
CLAIMED = {
    "": ["Callback", "LightningDataModule", "LightningModule", "Trainer", "seed_everything"],
    "core": ["LightningDataModule", "LightningModule"],
    "core.optimizer": ["LightningOptimizer"],
    "callbacks": ["Callback", "Checkpoint", "EarlyStopping", "LearningRateMonitor", "ModelCheckpoint",
                  "ModelSummary", "OnExceptionCheckpoint", "ProgressBar", "TQDMProgressBar", "Timer"],
    "loggers": ["CSVLogger", "Logger", "MLFlowLogger", "TensorBoardLogger"],
    "strategies": ["DDPStrategy", "SingleDeviceStrategy", "Strategy"],
    "utilities": ["AttributeDict", "CombinedLoader", "GradClipAlgorithmType", "LightningEnum",
                  "disable_possible_user_warnings", "find_shared_parameters", "grad_norm", "is_picklable",
                  "is_shared_filesystem", "measure_flops", "move_data_to_device", "rank_zero_deprecation",
                  "rank_zero_info", "rank_zero_only", "rank_zero_warn", "set_shared_parameters",
                  "suggested_max_num_workers"],
    "utilities.rank_zero": ["rank_zero_debug", "rank_zero_deprecation", "rank_zero_info", "rank_zero_only",
                            "rank_zero_warn"],
    "utilities.types": ["EVAL_DATALOADERS", "LRSchedulerConfigType", "LRSchedulerPLType", "LRSchedulerTypeUnion",
                        "OptimizerLRScheduler", "OptimizerLRSchedulerConfig", "STEP_OUTPUT", "TRAIN_DATALOADERS"],
}  # fmt: skip
# claimed names that lightray does not run: they import, and say so (with the alternative) when used
NOT_IN_LIGHTRAY = ["CombinedLoader", "measure_flops", "find_shared_parameters", "set_shared_parameters",
                   "is_shared_filesystem"]  # fmt: skip


@pytest.mark.parametrize("module", list(CLAIMED), ids=lambda m: m or "<top>")
def test_lightnings_import_paths_exist_in_lightray(module):
    import importlib

    theirs = importlib.import_module("pytorch_lightning" + (f".{module}" if module else ""))
    ours = importlib.import_module("lightray" + (f".{module}" if module else ""))
    for name in CLAIMED[module]:
        assert hasattr(theirs, name), f"{name} is not Lightning's (pytorch_lightning.{module}): claim only its names"
        assert hasattr(ours, name), f"lightray.{module} lacks Lightning's {name}"


@pytest.mark.parametrize("name", NOT_IN_LIGHTRAY)
def test_names_lightray_does_not_run_import_and_say_so_when_used(name):
    import lightray.utilities

    with pytest.raises(pl.MisconfigurationError, match=rf"lightray has no {name}: \w+"):
        getattr(lightray.utilities, name)()


def test_grad_norm_and_rank_zero_helpers_match_lightning():
    from pytorch_lightning.utilities import grad_norm as their_grad_norm

    from lightray.utilities import grad_norm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    net(torch.randn(5, 4)).sum().backward()
    ours, theirs = grad_norm(net, 2), their_grad_norm(net, 2)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert ours[key] == pytest.approx(float(theirs[key]), abs=1e-6)


def test_tqdm_progress_bar_is_the_trainers_progress_bar(quiet):
    bar = pl.callbacks.TQDMProgressBar(refresh_rate=5)
    trainer = pl.Trainer(max_epochs=1, callbacks=[bar], **{**quiet, "enable_progress_bar": True})
    assert trainer.progress_bar_callback is bar and bar.refresh_rate == 5
    assert type(bar.renderer).__name__ == "TqdmRenderer"

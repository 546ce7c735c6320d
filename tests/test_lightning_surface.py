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
        ("fsdp", "strategy='fsdp' without workers: FSDP shards the model over a process group"),
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
    "cli": ["LightningCLI"],
    "callbacks": ["BackboneFinetuning", "BaseFinetuning", "BasePredictionWriter", "BatchSizeFinder",
                  "GradientAccumulationScheduler", "Callback", "Checkpoint", "EarlyStopping", "LearningRateFinder",
                  "LearningRateMonitor", "ModelCheckpoint",
                  "ModelSummary", "OnExceptionCheckpoint", "ProgressBar", "TQDMProgressBar", "Timer",
                  "StochasticWeightAveraging", "DeviceStatsMonitor", "RichProgressBar", "RichModelSummary"],
    "callbacks.progress": ["ProgressBar", "RichProgressBar", "TQDMProgressBar"],
    "callbacks.progress.rich_progress": ["RichProgressBar", "RichProgressBarTheme"],
    "callbacks.progress.tqdm_progress": ["TQDMProgressBar"],
    "demos.boring_classes": ["BoringDataModule", "BoringModel", "DemoModel", "ManualOptimBoringModel", "RandomDataset",
                             "RandomDictDataset", "RandomIterableDataset", "RandomIterableDatasetWithLen"],
    "loggers": ["CSVLogger", "CometLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger"],
    "tuner": ["Tuner"],
    "utilities.combined_loader": ["CombinedLoader"],
    "strategies": ["DDPStrategy", "FSDPStrategy", "SingleDeviceStrategy", "Strategy"],
    "profilers": ["AdvancedProfiler", "PassThroughProfiler", "Profiler", "PyTorchProfiler", "SimpleProfiler"],
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
NOT_IN_LIGHTRAY = ["measure_flops", "find_shared_parameters", "set_shared_parameters",
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


# --- Trainer flags ------------------------------------------------------------------------------------------------
def _overfit_program(framework, overfit_batches):
    """A shuffled train loader and a val loader; overfit_batches reads the same first batches every epoch."""
    framework.seed_everything(3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g), torch.randn(64, 1, generator=g)

    class Model(framework.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(6, 1)
            self.losses, self.seen = [], []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch[0][:, 0].tolist())
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:32], y[:32]), batch_size=8, shuffle=True)
    model = Model()
    trainer = framework.Trainer(
        max_epochs=3,
        overfit_batches=overfit_batches,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.warns(UserWarning, match="You requested to overfit but enabled train dataloader shuffling"):
        trainer.fit(model, loader, val)
    return model, trainer


@pytest.mark.parametrize("overfit_batches", [2, 0.25])
def test_overfit_batches_reads_the_same_first_batches_every_epoch_as_lightning(overfit_batches):
    ours, our_trainer = _overfit_program(pl, overfit_batches)
    theirs, their_trainer = _overfit_program(lightning, overfit_batches)
    per_epoch = 2
    assert len(ours.seen) == len(theirs.seen) == 3 * per_epoch
    assert ours.seen[:per_epoch] == ours.seen[per_epoch : 2 * per_epoch] == theirs.seen[:per_epoch]
    assert ours.losses == pytest.approx(theirs.losses, abs=1e-6)
    assert float(our_trainer.callback_metrics["val_loss"]) == pytest.approx(
        float(their_trainer.callback_metrics["val_loss"]), abs=1e-6
    )


def test_benchmark_sets_cudnn_benchmark_and_deterministic_turns_it_off(quiet):
    before = torch.backends.cudnn.benchmark
    try:
        pl.Trainer(benchmark=True, **quiet)
        assert torch.backends.cudnn.benchmark is True
        trainer = pl.Trainer(deterministic=True, **quiet)
        assert trainer.benchmark is False and torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before
        torch.use_deterministic_algorithms(False)


def _nan_in_backward(framework):
    class NaNGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("nan")

    from pytorch_lightning.demos.boring_classes import BoringModel as LightningBoringModel

    class Model(BoringModel if framework is pl else LightningBoringModel):
        def training_step(self, batch, batch_idx):
            return NaNGrad.apply(self.layer(batch)).sum()

    trainer = framework.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, detect_anomaly=True,
                                accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(Model())


@pytest.mark.parametrize("framework", [pl, lightning], ids=["lightray", "lightning"])
def test_detect_anomaly_names_the_backward_that_made_a_nan(framework):
    with pytest.raises(RuntimeError, match=r"Function 'NaNGradBackward' returned nan values"):
        _nan_in_backward(framework)


def test_barebones_turns_off_what_costs_speed_and_self_log_warns_as_in_lightning(tmp_path):
    class Logs(BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("loss", out["loss"])
            return out

    trainer = pl.Trainer(barebones=True, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                         default_root_dir=tmp_path)  # fmt: skip
    assert trainer.loggers == [] and trainer.checkpoint_callback is None and trainer.progress_bar_callback is None
    assert trainer.num_sanity_val_steps == 0 and trainer.log_every_n_steps == 0
    with pytest.warns(UserWarning, match=r"`self.log\(\)` but `Trainer\(barebones=True\)` is configured"):
        trainer.fit(Logs())
    assert trainer.global_step == 2 and "loss" not in trainer.callback_metrics
    assert not any(tmp_path.iterdir())  # nothing written
    with pytest.raises(pl.MisconfigurationError, match=r"barebones=True with enable_checkpointing=True"):
        pl.Trainer(barebones=True, enable_checkpointing=True)


def test_plugins_are_an_error_that_says_where_each_concern_went(quiet):
    with pytest.raises(pl.MisconfigurationError, match=r"plugins=.*lightray takes no plugins\. Precision is"):
        pl.Trainer(plugins=[object()], **quiet)


# --- profilers ------------------------------------------------------------------------------------------------------
def _profiled_fit(profiler, tmp_path) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=2, profiler=profiler,
                         default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(BoringModel())
    return trainer


def test_simple_profiler_reports_each_hook_and_step_at_the_end_of_fit(tmp_path, caplog):
    profiler = pl.profilers.SimpleProfiler(dirpath=tmp_path / "profiles", filename="perf")
    _profiled_fit(profiler, tmp_path)
    report = (tmp_path / "profiles" / "fit-perf.txt").read_text()
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in report.splitlines()[4:] if "|" in line}
    assert report.startswith("FIT Profiler Report")
    checkpointing = pl.callbacks.ModelCheckpoint().state_key  # Lightning names callbacks by their state_key
    assert rows["[Strategy]SingleDeviceStrategy.training_step"] == "3"  # calls
    assert rows["[_TrainingEpochLoop].train_dataloader_next"] == "3"
    assert rows[f"[Callback]{checkpointing}.on_train_epoch_end"] == "1"
    assert rows["[LightningModule]BoringModel.configure_optimizers"] == "1"
    assert rows["[LightningModule]BoringModel.optimizer_step"] == "3"


@pytest.mark.parametrize("name", ["simple", "advanced", "pytorch"])
def test_profilers_by_name_print_their_report_on_the_lightray_logger(name, tmp_path, caplog):
    with caplog.at_level("INFO", logger="lightray"):
        trainer = _profiled_fit(name, tmp_path)
    assert type(trainer.profiler).__name__.lower().startswith(name)
    reports = [r.getMessage() for r in caplog.records if "FIT Profiler Report" in r.getMessage()]
    assert len(reports) == 1 and "training_step" in reports[0]


def _profiled_stages(framework, tmp_path) -> dict[str, dict[str, int]]:
    """The calls of each action in the SimpleProfiler reports of fit (with a sanity check and validation),
    validate, test and predict of one Trainer."""
    framework.seed_everything(0)
    x, y = torch.randn(40, 4), torch.randn(40, 1)

    def loader():
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)

    class Data(framework.LightningDataModule):
        def train_dataloader(self):
            return loader()

        def val_dataloader(self):
            return loader()

        def test_dataloader(self):
            return loader()

        def predict_dataloader(self):
            return loader()

    class Model(framework.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def test_step(self, batch, batch_idx):
            self.log("test_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def predict_step(self, batch, batch_idx):
            return self.net(batch[0])

        def on_train_epoch_end(self):
            self.log("epoch_end", 1.0)

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}

    class Counting(framework.Callback):
        batches = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.batches += 1

    profiler = framework.profilers.SimpleProfiler(dirpath=tmp_path / "profiles", filename="perf")
    callbacks = [framework.callbacks.ModelCheckpoint(monitor="val_loss"),
                 framework.callbacks.EarlyStopping(monitor="val_loss", patience=3), Counting()]  # fmt: skip
    # progress bar and model summary off: Lightning picks its Rich* classes when rich is installed, lightray its
    # plain ones, and the reports name each callback by class
    trainer = framework.Trainer(max_epochs=2, limit_train_batches=4, num_sanity_val_steps=2, accumulate_grad_batches=2,
                                profiler=profiler, callbacks=callbacks, default_root_dir=tmp_path, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")  # fmt: skip
    model, data = Model(), Data()
    trainer.fit(model, datamodule=data)
    trainer.validate(model, datamodule=data, verbose=False)
    trainer.test(model, datamodule=data, verbose=False)
    trainer.predict(model, datamodule=data)
    reports = {}
    for stage in ("fit", "validate", "test", "predict"):
        lines = (tmp_path / "profiles" / f"{stage}-perf.txt").read_text().splitlines()
        cells = [[cell.strip() for cell in line.split("|")] for line in lines if line.count("|") >= 6]
        reports[stage] = {row[1]: int(row[3]) for row in cells if row[3].isdigit()}
    return reports


def test_simple_profiler_reports_the_actions_and_calls_of_lightnings(tmp_path):
    # every hook of every callback and of the module, the strategy's steps and hooks, the loops' batch fetches,
    # save_checkpoint, ...; like Lightning's, the profiler keeps its records from stage to stage, so each report
    # counts the stages before it too (and its "Total" row, the sum of the calls, is the same as well)
    ours = _profiled_stages(pl, tmp_path / "lightray")
    theirs = _profiled_stages(lightning, tmp_path / "lightning")
    for stage, actions in theirs.items():
        assert ours[stage] == actions, stage
    assert ours["fit"]["[Strategy]SingleDeviceStrategy.training_step"] == 8
    assert ours["validate"]["[_EvaluationLoop].val_next"] == 2 + 5 + 5 + 5  # sanity check, 2 epochs, validate


def test_an_unknown_profiler_names_the_choices(quiet):
    with pytest.raises(pl.MisconfigurationError, match=r"profiler='fast': use one of \['advanced', 'pytorch'"):
        pl.Trainer(profiler="fast", **quiet)


# --- callbacks: accumulation schedule, prediction writer ------------------------------------------------------------
def _accumulation_program(framework):
    framework.seed_everything(4)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 6, generator=g), torch.randn(64, 1, generator=g)

    class Recording(framework.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(6, 1)
            self.steps_at_batch: list[int] = []

        def training_step(self, batch, batch_idx):
            self.steps_at_batch.append(self.trainer.global_step)
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    scheduler = framework.callbacks.GradientAccumulationScheduler(scheduling={1: 2, 2: 4})
    model = Recording()
    trainer = framework.Trainer(
        max_epochs=3,
        callbacks=[scheduler],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True)
    trainer.fit(model, loader)
    return model.steps_at_batch, {k: v.clone() for k, v in model.state_dict().items()}, trainer.global_step


def test_gradient_accumulation_scheduler_steps_as_lightning():
    ours, our_weights, our_steps = _accumulation_program(pl)
    theirs, their_weights, their_steps = _accumulation_program(lightning)
    assert our_steps == their_steps == 8 + 4 + 2  # 1, then 2, then 4 batches per step
    assert ours == theirs
    for key, value in their_weights.items():
        assert torch.allclose(our_weights[key], value, atol=1e-6), key
    with pytest.raises(pl.MisconfigurationError, match="Accumulation factor should be an int greater than 0"):
        pl.callbacks.GradientAccumulationScheduler({0: 0})


def test_a_prediction_writer_writes_per_batch_and_per_epoch(tmp_path, quiet):
    class Writer(pl.callbacks.BasePredictionWriter):
        def __init__(self):
            super().__init__(write_interval="batch_and_epoch")
            self.batches, self.epochs = [], []

        def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
            self.batches.append((batch_idx, tuple(prediction.shape)))

        def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
            self.epochs.append(len(predictions))

    writer = Writer()
    trainer = pl.Trainer(callbacks=[writer], limit_predict_batches=3, **quiet)
    returned = trainer.predict(BoringModel())
    assert writer.batches == [(0, (2, 2)), (1, (2, 2)), (2, (2, 2))] and writer.epochs == [3] and len(returned) == 3
    with pytest.raises(pl.MisconfigurationError, match=r"`write_interval` should be one of"):
        pl.callbacks.BasePredictionWriter("step")


# --- module API -----------------------------------------------------------------------------------------------------
class _Net(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        self.example_input_array = torch.randn(3, 4)

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("method", ["script", "trace"])
def test_to_torchscript_saves_a_module_that_gives_the_same_outputs(method, tmp_path):
    model = _Net()
    path = tmp_path / "model.pt"
    model.to_torchscript(path, method=method)
    loaded = torch.jit.load(str(path))
    x = torch.randn(5, 4)
    assert torch.allclose(loaded(x), model(x)) and model.training  # the module's mode is restored


def test_dtype_on_gpu_toggled_optimizer_and_strict_loading():
    model = _Net()
    assert model.dtype == torch.float32 and model.double().dtype == torch.float64 and model.on_gpu is False
    assert model.strict_loading is True
    model.strict_loading = False
    assert model.strict_loading is False
    with pytest.raises((ValueError, ModuleNotFoundError), match=r"needs (input_sample|the onnx package)"):
        pl.LightningModule().to_onnx("x.onnx")  # no sample (or, without onnx installed, says to install it)


def test_toggled_optimizer_freezes_the_other_optimizers_parameters_for_the_block(quiet):
    class TwoOptimizers(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.g, self.d = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
            self.seen = []

        def training_step(self, batch, batch_idx):
            g_opt, d_opt = self.optimizers()
            with self.toggled_optimizer(d_opt):
                self.seen.append((self.g.weight.requires_grad, self.d.weight.requires_grad))
            self.seen.append((self.g.weight.requires_grad, self.d.weight.requires_grad))

        def configure_optimizers(self):
            return torch.optim.SGD(self.g.parameters(), lr=0.1), torch.optim.SGD(self.d.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=2)

    model = TwoOptimizers()
    pl.Trainer(max_epochs=1, limit_train_batches=1, **quiet).fit(model)
    assert model.seen == [(False, True), (True, True)]


# --- true precisions ------------------------------------------------------------------------------------------------
def _precision_program(framework, precision):
    framework.seed_everything(9)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(48, 5, generator=g), torch.randn(48, 1, generator=g)

    class Model(framework.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
            self.seen = []

        def training_step(self, batch, batch_idx):
            self.seen.append((batch[0].dtype, torch.zeros(1).dtype, self.net[0].weight.dtype))
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Model()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    trainer = framework.Trainer(
        max_epochs=2,
        precision=precision,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader, loader)
    return model, float(trainer.callback_metrics["val_loss"])


@pytest.mark.parametrize(("precision", "dtype"), [("64-true", torch.float64), ("bf16-true", torch.bfloat16)])
def test_true_precisions_train_in_that_dtype_as_lightning(precision, dtype):
    ours, our_loss = _precision_program(pl, precision)
    theirs, their_loss = _precision_program(lightning, precision)
    assert ours.seen[0] == theirs.seen[0] == (dtype, dtype, dtype)  # inputs, tensors made in the step, weights
    assert torch.get_default_dtype() == torch.float32  # restored after each step
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert a.dtype == dtype and torch.allclose(a.double(), b.double(), atol=1e-6), name
    assert our_loss == pytest.approx(their_loss, abs=1e-6)


@pytest.mark.parametrize("reduce_fx", ["AVG", "Mean", sum, max, min, torch.sum])
def test_reduce_fx_takes_lightnings_aliases(reduce_fx, quiet):
    class Logs(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", float(batch_idx + 1), reduce_fx=reduce_fx)

    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=3, num_sanity_val_steps=0, **quiet)
    trainer.fit(Logs())
    name = getattr(reduce_fx, "__name__", str(reduce_fx)).lower()
    expected = {"avg": 2.0, "mean": 2.0, "sum": 6.0, "max": 3.0, "min": 1.0}[name]
    assert float(trainer.callback_metrics["v"]) == expected


def test_every_logger_has_an_experiment(tmp_path):
    csv = pl.loggers.CSVLogger(tmp_path)
    assert csv.experiment is csv and callable(csv.experiment.log_metrics)
    tensorboard = pl.loggers.TensorBoardLogger(tmp_path)
    assert callable(tensorboard.experiment.add_image)  # what a GAN example calls


@pytest.mark.parametrize("precision", ["64-true", "bf16-true", "32-true"])
def test_init_module_creates_parameters_in_the_precisions_dtype_as_lightning(precision, quiet):
    with pl.Trainer(precision=precision, **quiet).init_module():
        ours = torch.nn.Linear(2, 2)
    with lightning.Trainer(precision=precision, accelerator="cpu", logger=False).init_module():
        theirs = torch.nn.Linear(2, 2)
    assert ours.weight.dtype == theirs.weight.dtype and torch.get_default_dtype() == torch.float32

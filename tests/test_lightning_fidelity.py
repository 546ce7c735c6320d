"""lightray against pytorch-lightning on the behaviours programs silently depend on: the random stream around the
sanity check, submodule modes, what callbacks and loggers see at each point, how hooks are found and called,
Lightning's warnings, and resuming from a checkpoint Lightning wrote."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray

pl = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")
FRAMEWORKS = {"lightray": lightray, "lightning": pl}
QUIET = dict(enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


def data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, (x.sum(1, keepdim=True) > 0).float())


def make_model(fw: Any) -> type:
    class Model(fw.LightningModule):
        def __init__(self, frozen: bool = False) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3))
            self.head = nn.Linear(16, 1)
            self.losses: list[float] = []
            self.modes: list[bool] = []
            if frozen:
                self.backbone.requires_grad_(False)
                self.backbone.eval()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.binary_cross_entropy_with_logits(self(x), y)
            self.losses.append(loss.item())
            self.modes.append(self.backbone.training)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.binary_cross_entropy_with_logits(self(x), y))

        def test_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("test_loss", nn.functional.binary_cross_entropy_with_logits(self(x), y))

        def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self(batch[0])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Model


def loaders(shuffle: bool = True) -> tuple[DataLoader, DataLoader]:
    return DataLoader(data(64), batch_size=8, shuffle=shuffle), DataLoader(data(32, seed=1), batch_size=8)


def fit(fw: Any, tmp_path: Any, frozen: bool = False, **trainer_kwargs: Any) -> tuple[Any, Any]:
    fw.seed_everything(7)
    model = make_model(fw)(frozen=frozen)
    kwargs = dict(max_epochs=2, logger=False, enable_checkpointing=False, default_root_dir=tmp_path, **QUIET)
    trainer = fw.Trainer(**{**kwargs, **trainer_kwargs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, *loaders())
    return model, trainer


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x.float(), y.float(), atol=1e-5, rtol=0, msg=name)


def test_sanity_check_does_not_move_the_random_stream(tmp_path):
    """Shuffled training data and dropout draw the same numbers with or without the sanity check."""
    ours, _ = fit(lightray, tmp_path)
    theirs, _ = fit(pl, tmp_path)
    without, _ = fit(lightray, tmp_path, num_sanity_val_steps=0)
    assert ours.losses == pytest.approx(theirs.losses, abs=1e-5)
    assert_same_weights(ours, theirs)
    assert_same_weights(ours, without)


def test_a_frozen_backbone_stays_in_eval_mode_and_modes_survive_each_stage(tmp_path):
    ours, trainer = fit(lightray, tmp_path, frozen=True)
    theirs, _ = fit(pl, tmp_path, frozen=True)
    assert ours.modes == theirs.modes and not any(ours.modes)
    assert ours.losses == pytest.approx(theirs.losses, abs=1e-5)
    assert_same_weights(ours, theirs)
    assert ours.head.training and not ours.backbone.training  # after fit's validation: restored, not all-train
    trainer.predict(ours, DataLoader(data(16), batch_size=8))
    assert ours.head.training and not ours.backbone.training  # predict restores the modes it found


@pytest.mark.parametrize("fw", FRAMEWORKS.values(), ids=FRAMEWORKS)
def test_stages_start_with_zeroed_gradients(fw):
    model = make_model(fw)()
    seen: list[bool] = []
    model.on_validation_start = lambda: seen.append(all(p.grad is None for p in model.parameters()))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    fw.Trainer(logger=False, **QUIET).validate(model, loaders()[1], verbose=False)
    assert seen == [True]


def epoch_end_recorder(fw: Any) -> Any:
    class Recorder(fw.Callback):
        def __init__(self) -> None:
            self.seen: list[dict[str, float]] = []

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.seen.append({k: round(float(v), 5) for k, v in trainer.callback_metrics.items()})

    return Recorder()


def test_callbacks_see_the_epochs_reduction_at_epoch_end_and_checkpoints_pick_the_same_best(tmp_path):
    results = {}
    for name, fw in FRAMEWORKS.items():
        recorder = epoch_end_recorder(fw)
        best = fw.callbacks.ModelCheckpoint(dirpath=tmp_path / name, monitor="train_loss_epoch", save_top_k=1)
        stop = fw.callbacks.EarlyStopping(monitor="train_loss_epoch", patience=5)
        _, trainer = fit(fw, tmp_path, max_epochs=3, callbacks=[recorder, best, stop], enable_checkpointing=True)
        results[name] = (recorder.seen, best.best_model_path.rsplit("/", 1)[-1], float(best.best_model_score))
    assert results["lightray"][0] == results["lightning"][0]
    assert results["lightray"][1:] == pytest.approx(results["lightning"][1:])


class RecordingLogger:
    """The same logger for both frameworks: what log_metrics receives, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []

    def record(self, metrics: dict[str, float], step: int | None) -> None:
        self.calls.append((step, {k: round(float(v), 5) for k, v in sorted(metrics.items())}))


def make_logger(fw: Any) -> Any:
    from lightray.loggers.logger import Logger

    base = Logger if fw is lightray else pl.loggers.Logger

    class Recording(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.rec = RecordingLogger()

        name = "rec"  # type: ignore[assignment]
        version = 0  # type: ignore[assignment]

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.rec.record(metrics, step)

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

    return Recording()


def make_eval_model(fw: Any) -> type:
    class Eval(make_model(fw)):  # type: ignore[misc]
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            x, y = batch
            loss = nn.functional.binary_cross_entropy_with_logits(self(x), y)
            self.log("v", loss, on_step=True, on_epoch=True)
            self.log("v_only_step", loss, on_step=True, on_epoch=False)

    return Eval


def test_loggers_get_eval_step_metrics_and_lightnings_dataloader_key_names(tmp_path):
    results = {}
    for name, fw in FRAMEWORKS.items():
        fw.seed_everything(3)
        model = make_eval_model(fw)()
        logger = make_logger(fw)
        trainer = fw.Trainer(max_epochs=2, logger=logger, log_every_n_steps=4, enable_checkpointing=False, **QUIET)
        train, val = loaders()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, train, [val, DataLoader(data(16, seed=2), batch_size=8)])
        results[name] = (logger.rec.calls, sorted(trainer.callback_metrics))
    ours, theirs = results["lightray"], results["lightning"]
    assert ours[1] == theirs[1]
    assert [step for step, _ in ours[0]] == [step for step, _ in theirs[0]]
    assert ours[0] == theirs[0]


def test_callback_metrics_are_reset_when_a_stage_starts(tmp_path):
    for fw in FRAMEWORKS.values():
        model, trainer = fit(fw, tmp_path)
        trainer.test(model, loaders()[1], verbose=False)
        assert sorted(trainer.callback_metrics) == ["test_loss"], fw.__name__
        trainer.predict(model, DataLoader(data(16), batch_size=8))
        assert trainer.callback_metrics == {}, fw.__name__


@pytest.mark.parametrize(("args", "match"), [(("x", 1.0), "not useful"), ((3, 1.0), "")])
def test_log_calls_lightning_refuses(args, match):
    class Bad(make_model(lightray)):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.log(*args, on_step=False, on_epoch=False) if args[0] == "x" else self.log(*args)
            return super().training_step(batch, batch_idx)

    with pytest.raises(lightray.MisconfigurationError, match=match or "name must be a str"):
        lightray.Trainer(max_steps=1, logger=False, **QUIET).fit(Bad(), loaders()[0])


@pytest.mark.parametrize("fw", FRAMEWORKS.values(), ids=FRAMEWORKS)
def test_instance_hooks_are_found_and_a_none_step_is_absent(fw):
    model = make_model(fw)()
    calls: list[str] = []
    model.on_train_start = lambda: calls.append("on_train_start")
    model.validation_step = None
    trainer = fw.Trainer(max_steps=2, logger=False, enable_checkpointing=False, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, *loaders())
    assert calls == ["on_train_start"] and "val_loss" not in trainer.callback_metrics


@pytest.mark.parametrize("fw", FRAMEWORKS.values(), ids=FRAMEWORKS)
def test_hooks_get_keywords_where_lightning_passes_keywords(fw):
    received: list[tuple[str, tuple, dict]] = []

    class Keywords(make_model(fw)):  # type: ignore[misc]
        def setup(self, *args: Any, **kwargs: Any) -> None:
            received.append(("setup", args, dict(kwargs)))

        def teardown(self, *args: Any, **kwargs: Any) -> None:
            received.append(("teardown", args, dict(kwargs)))

        def configure_gradient_clipping(self, optimizer: Any, *args: Any, **kwargs: Any) -> None:
            received.append(("clip", args, dict(kwargs)))

        def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any) -> None:
            assert callable(optimizer_closure) and hasattr(optimizer_closure, "consume_result")
            optimizer.step(closure=optimizer_closure)

    trainer = fw.Trainer(max_steps=1, logger=False, enable_checkpointing=False, gradient_clip_val=1.0, **QUIET)
    trainer.fit(Keywords(), loaders()[0])
    shapes = [(name, len(args), sorted(kwargs)) for name, args, kwargs in received]
    assert shapes == [
        ("setup", 0, ["stage"]),
        ("clip", 0, ["gradient_clip_algorithm", "gradient_clip_val"]),
        ("teardown", 0, ["stage"]),
    ]


def messages(fw: Any, build: Any, **trainer_kwargs: Any) -> tuple[list[str], list[str]]:
    """Warnings and log lines of one fit."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    name = "lightray" if fw is lightray else "pytorch_lightning"
    logging.getLogger(name).addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = fw.Trainer(enable_checkpointing=False, default_root_dir=None, **QUIET, **trainer_kwargs)
            trainer.fit(*build(fw))
    finally:
        logging.getLogger(name).removeHandler(handler)
    return [str(w.message) for w in caught], records


def none_loss(fw: Any) -> tuple:
    class NoLoss(make_model(fw)):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> None:
            return None

    return NoLoss(), loaders()[0]


def no_optimizer(fw: Any) -> tuple:
    class NoOptimizer(make_model(fw)):  # type: ignore[misc]
        def configure_optimizers(self) -> None:
            return None

    return NoOptimizer(), loaders()[0]


def empty_loader(fw: Any) -> tuple:
    return make_model(fw)(), DataLoader(data(4), batch_size=8, drop_last=True)


@pytest.mark.parametrize(
    ("build", "kwargs", "expected"),
    [
        (none_loss, dict(max_steps=2, logger=False), "`training_step` returned `None`. If this was on purpose"),
        (no_optimizer, dict(max_steps=2, logger=False), "`LightningModule.configure_optimizers` returned `None`"),
        (empty_loader, dict(max_epochs=1, logger=False), "Total length of `DataLoader` across ranks is zero"),
        (lambda fw: (make_model(fw)(), loaders()[0]), dict(max_epochs=1), "is smaller than the logging interval"),
        (lambda fw: (make_model(fw)(), loaders()[0]), dict(max_epochs=2, logger=False), "`max_epochs=2` reached."),
        (lambda fw: (make_model(fw)(), loaders()[0]), dict(max_steps=3, logger=False), "`max_steps=3` reached."),
        (empty_loader, dict(max_epochs=1, logger=False), "`Trainer.fit` stopped: No training batches."),
    ],
)
def test_lightnings_warnings_and_stop_lines(build, kwargs, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for fw in FRAMEWORKS.values():
        caught, logged = messages(fw, build, **kwargs)
        assert any(expected in m for m in caught + logged), (fw.__name__, caught, logged)


@pytest.mark.parametrize("every_n_train_steps", [0, 3])
def test_fit_resumes_from_a_checkpoint_lightning_wrote(tmp_path, every_n_train_steps):
    """Lightning saves (at an epoch's end, or mid-epoch), then each framework resumes from that file."""
    callback = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path, save_top_k=-1, every_n_train_steps=every_n_train_steps or None, save_last=False
    )
    fit(pl, tmp_path, max_epochs=1, callbacks=[callback], enable_checkpointing=True)
    path = sorted(tmp_path.glob("*.ckpt"))[0]
    finished = {}
    for name, fw in FRAMEWORKS.items():
        fw.seed_everything(11)
        model = make_model(fw)()
        trainer = fw.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, **QUIET)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, *loaders(shuffle=False), ckpt_path=str(path))
        finished[name] = (model, trainer.global_step, trainer.current_epoch, len(model.losses))
    (ours, *ours_counts), (theirs, *their_counts) = finished["lightray"], finished["lightning"]
    assert ours_counts == their_counts
    assert_same_weights(ours, theirs)

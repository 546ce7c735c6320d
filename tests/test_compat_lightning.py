"""lightray against pytorch-lightning itself: same program, same hooks in the same order, same losses."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from recording import make_compare_model, make_recorder

import lightray

pl = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "sgd_shuffled": (dict(optim="sgd", shuffle=True), dict(max_epochs=2)),
    "adam_steplr": (dict(optim="adam", sched="steplr"), dict(max_epochs=3)),
    "adam_step_interval_scheduler": (dict(optim="adam", sched="steplr_step"), dict(max_epochs=2)),
    "accumulate4_clip": (
        dict(optim="sgd", n=88),  # 11 batches: the last window is short
        dict(max_epochs=2, accumulate_grad_batches=4, gradient_clip_val=0.1),
    ),
    "reduce_on_plateau": (dict(optim="sgd", sched="plateau"), dict(max_epochs=4)),
    "manual_two_optimizers": (dict(manual=True), dict(max_epochs=2)),
    "val_check_interval_half": (dict(optim="adam"), dict(max_epochs=2, val_check_interval=0.5)),
    "limits_and_max_steps": (dict(optim="sgd"), dict(max_steps=7, limit_train_batches=0.5, limit_val_batches=2)),
}


def recording_callback(framework: Any, calls: list[str]) -> Any:
    """A callback of ``framework`` that appends every hook it gets to ``calls``."""
    _, RecordingCallback = make_recorder(framework)
    callback = RecordingCallback()
    callback.calls = calls
    return callback


def run(framework: Any, model_kwargs: dict[str, Any], trainer_kwargs: dict[str, Any]) -> dict[str, Any]:
    calls: list[str] = []
    callback = recording_callback(framework, calls)
    torch.manual_seed(0)
    model = make_compare_model(framework)(calls, **model_kwargs)
    trainer = framework.Trainer(callbacks=[callback], **QUIET, **trainer_kwargs)
    trainer.fit(model)
    return {
        "calls": calls,
        "losses": model.losses,
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "callback_metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "lrs": [g["lr"] for opt in trainer.optimizers for g in opt.param_groups],
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_hooks_losses_and_weights_as_lightning(case: str) -> None:
    model_kwargs, trainer_kwargs = CASES[case]
    ours = run(lightray, model_kwargs, trainer_kwargs)
    theirs = run(pl, model_kwargs, trainer_kwargs)

    assert ours["calls"] == theirs["calls"]
    assert len(ours["losses"]) == len(theirs["losses"]) > 0
    torch.testing.assert_close(torch.tensor(ours["losses"]), torch.tensor(theirs["losses"]), atol=1e-5, rtol=0)
    for name, value in theirs["weights"].items():
        torch.testing.assert_close(ours["weights"][name], value, atol=1e-5, rtol=0)
    assert ours["global_step"] == theirs["global_step"]
    assert ours["current_epoch"] == theirs["current_epoch"]
    assert ours["lrs"] == pytest.approx(theirs["lrs"])
    assert ours["callback_metrics"].keys() == theirs["callback_metrics"].keys()
    for key, value in theirs["callback_metrics"].items():
        assert ours["callback_metrics"][key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.parametrize("stage", ["validate", "test", "predict"])
def test_same_hooks_as_lightning_outside_fit(stage: str) -> None:
    from recording import make_tiny_model

    results = {}
    for framework in (lightray, pl):
        calls: list[str] = []
        callback = recording_callback(framework, calls)
        torch.manual_seed(0)
        model = make_tiny_model(framework)(calls, n=24, batch_size=8)
        trainer = framework.Trainer(callbacks=[callback], **QUIET)
        output = getattr(trainer, stage)(model)
        results[framework.__name__] = (calls, output)
    (ours, our_out), (theirs, their_out) = results["lightray"], results["pytorch_lightning"]
    assert ours == theirs
    if stage == "predict":
        torch.testing.assert_close(torch.cat(our_out), torch.cat(their_out))
    else:
        assert our_out[0].keys() == their_out[0].keys()
        for key in their_out[0]:
            assert our_out[0][key] == pytest.approx(their_out[0][key], abs=1e-6)


def test_same_hooks_as_lightning_without_sanity_check_and_when_resuming(tmp_path) -> None:
    """Hooks (and their arguments) of a fit without sanity check, and of a fit resumed from its own checkpoint."""
    results = {}
    for framework in (lightray, pl):
        name = framework.__name__
        model_cls = make_compare_model(framework)
        torch.manual_seed(0)
        first = model_cls([], optim="adam", sched="steplr")
        trainer = framework.Trainer(max_epochs=1, num_sanity_val_steps=0, default_root_dir=tmp_path / name,
                                    logger=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        trainer.fit(first)
        path = trainer.checkpoint_callback.best_model_path
        calls: list[str] = []
        callback = recording_callback(framework, calls)
        torch.manual_seed(0)
        resumed = model_cls(calls, optim="adam", sched="steplr")
        trainer = framework.Trainer(max_epochs=2, callbacks=[callback], **QUIET)
        trainer.fit(resumed, ckpt_path=path)
        results[name] = (calls, first.calls, resumed.state_dict(), trainer.global_step)
    (ours, our_first, our_weights, our_step), (theirs, their_first, their_weights, their_step) = results.values()
    assert our_first == their_first and "on_sanity_check_start" not in str(our_first)
    assert ours == theirs and any(c.startswith("on_load_checkpoint") for c in ours)
    assert our_step == their_step
    for key, value in their_weights.items():
        torch.testing.assert_close(our_weights[key], value, atol=1e-5, rtol=0)


def make_datamodule(framework: Any, calls: list[str]) -> Any:
    class Data(framework.LightningDataModule):
        def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
            calls.append(f"datamodule.{name}({len(args)} args{''.join(f', {k}=' for k in sorted(kwargs))})")

        def prepare_data(self) -> None:
            self._record("prepare_data")

        def setup(self, *args: Any, **kwargs: Any) -> None:
            self._record("setup", *args, **kwargs)
            g = torch.Generator().manual_seed(3)
            self.x, self.y = torch.randn(48, 8, generator=g), torch.randn(48, 1, generator=g)

        def teardown(self, *args: Any, **kwargs: Any) -> None:
            self._record("teardown", *args, **kwargs)

        def train_dataloader(self) -> Any:
            self._record("train_dataloader")
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=8)

        def val_dataloader(self) -> Any:
            self._record("val_dataloader")
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x[:16], self.y[:16]), batch_size=8)

    return Data()


def test_same_hooks_as_lightning_with_a_datamodule() -> None:
    results = {}
    for framework in (lightray, pl):
        calls: list[str] = []
        callback = recording_callback(framework, calls)
        torch.manual_seed(0)
        model = make_compare_model(framework)(calls, optim="sgd")
        trainer = framework.Trainer(max_epochs=2, callbacks=[callback], **QUIET)
        trainer.fit(model, datamodule=make_datamodule(framework, calls))
        results[framework.__name__] = (calls, model.losses)
    (ours, our_losses), (theirs, their_losses) = results.values()
    assert ours == theirs and "datamodule.setup(0 args, stage=)" in ours
    assert our_losses == pytest.approx(their_losses, abs=1e-5)

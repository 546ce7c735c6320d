"""What ``self.log`` does with every on_step/on_epoch/prog_bar/logger combination and reduce_fx, from steps, epoch
hooks and callbacks: lightray against pytorch-lightning on callback_metrics, logged_metrics, progress_bar_metrics
at each hook, and on what the loggers receive and when."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray

pl = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")

FLAGS = [
    (on_step, on_epoch, prog_bar, logger)
    for on_step, on_epoch in itertools.product((None, True, False), repeat=2)
    for prog_bar, logger in ((False, True), (True, True), (True, False))
    if (on_step, on_epoch) != (False, False)
]
REDUCE = ("mean", "sum", "max", "min")
LOCATIONS = ("training_step", "validation_step", "on_train_epoch_end", "callback_on_train_batch_end",
             "callback_on_validation_batch_end", "on_validation_epoch_end")  # fmt: skip


def log_all(module: Any, value: torch.Tensor, errors: dict[str, str]) -> None:
    """Log ``value`` under one name per flag combination (and per reduce_fx); note which calls raise."""
    for on_step, on_epoch, prog_bar, logger in FLAGS:
        name = f"m_{on_step}_{on_epoch}_{int(prog_bar)}{int(logger)}"
        try:
            module.log(name, value, on_step=on_step, on_epoch=on_epoch, prog_bar=prog_bar, logger=logger)
        except Exception as err:  # both frameworks must refuse the same calls
            errors[name] = type(err).__name__
    for reduce_fx in REDUCE:
        try:
            module.log(f"r_{reduce_fx}", value, on_epoch=True, reduce_fx=reduce_fx)
        except Exception as err:
            errors[f"r_{reduce_fx}"] = type(err).__name__


def run(fw: Any, location: str) -> dict[str, Any]:
    from lightray.loggers.logger import Logger as LightrayLogger

    errors: dict[str, str] = {}
    snapshots: list[tuple[str, dict, dict, dict]] = []
    logged: list[tuple[int | None, dict[str, float]]] = []

    def plain(metrics: dict[str, Any]) -> dict[str, float]:
        return {k: round(float(v), 5) for k, v in sorted(metrics.items())}

    def snap(trainer: Any, hook: str) -> None:
        snapshots.append((hook, plain(trainer.callback_metrics), plain(trainer.logged_metrics),
                          plain(trainer.progress_bar_metrics)))  # fmt: skip

    class Model(fw.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = self.layer(batch[0]).pow(2).mean()
            if location == "training_step":
                log_all(self, batch[0].sum() + batch_idx, errors)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            if location == "validation_step":
                log_all(self, batch[0].sum() - batch_idx, errors)

        def on_train_epoch_end(self) -> None:
            if location == "on_train_epoch_end":
                log_all(self, torch.tensor(float(self.current_epoch) + 0.5), errors)

        def on_validation_epoch_end(self) -> None:
            if location == "on_validation_epoch_end":
                log_all(self, torch.tensor(float(self.current_epoch) + 0.25), errors)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Snapshots(fw.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if location == "callback_on_train_batch_end":
                log_all(pl_module, batch[0].mean() * (batch_idx + 1), errors)
            snap(trainer, f"on_train_batch_end {batch_idx}")

        def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                    dataloader_idx: int = 0) -> None:  # fmt: skip
            if location == "callback_on_validation_batch_end":
                log_all(pl_module, batch[0].mean() + batch_idx, errors)
            snap(trainer, f"on_validation_batch_end {batch_idx}")

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            snap(trainer, "on_validation_epoch_end")

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            snap(trainer, "on_validation_end")

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            snap(trainer, "on_train_epoch_end")

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            snap(trainer, "on_fit_end")

    base = LightrayLogger if fw is lightray else pl.loggers.Logger

    class Recording(base):  # type: ignore[misc, valid-type]
        name = "rec"  # type: ignore[assignment]
        version = 0  # type: ignore[assignment]

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            logged.append((step, plain(metrics)))

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

    g = torch.Generator().manual_seed(0)
    train = DataLoader(TensorDataset(torch.randn(24, 4, generator=g)), batch_size=4)
    val = DataLoader(TensorDataset(torch.randn(12, 4, generator=g)), batch_size=4)
    trainer = fw.Trainer(max_epochs=2, callbacks=[Snapshots()], logger=Recording(), log_every_n_steps=2,
                         num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Model(), train, val)
    return {"errors": errors, "snapshots": snapshots, "logged": logged}


@pytest.mark.parametrize("location", LOCATIONS)
def test_logging_matrix_matches_lightning(location: str) -> None:
    ours, theirs = run(lightray, location), run(pl, location)
    assert sorted(ours["errors"]) == sorted(theirs["errors"])  # the same calls are refused
    assert len(ours["snapshots"]) == len(theirs["snapshots"])
    for mine, reference in zip(ours["snapshots"], theirs["snapshots"]):
        hook = reference[0]
        assert mine[0] == hook
        for what, a, b in zip(("callback_metrics", "logged_metrics", "progress_bar_metrics"), mine[1:], reference[1:]):
            assert a == pytest.approx(b, abs=1e-4), f"{what} at {hook}: lightray {a} vs Lightning {b}"
    assert [step for step, _ in ours["logged"]] == [step for step, _ in theirs["logged"]]
    for (step, mine), (_, reference) in zip(ours["logged"], theirs["logged"]):
        assert mine == pytest.approx(reference, abs=1e-4), f"logger call at step {step}"

"""Several training loaders at once (a dict or list from ``train_dataloader``, or a ``CombinedLoader`` in any of
its modes) train as in Lightning: the same batches in the same order, the same losses and weights; a resumed
run ends with the uninterrupted run's weights."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray

lightning = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")

QUIET = dict(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, logger=False)


def _program(pl: Any, shape: str, mode: str | None) -> Any:
    """Labelled and unlabelled data of different lengths, both shuffled, read together in ``training_step``."""
    generator = torch.Generator().manual_seed(3)
    labelled = TensorDataset(torch.randn(24, 4, generator=generator), torch.randn(24, 1, generator=generator))
    unlabelled = TensorDataset(torch.randn(40, 4, generator=generator))

    class SemiSupervised(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 1))
            self.losses: list[float] = []
            self.seen: list[Any] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            sup, unsup = (batch["sup"], batch["unsup"]) if shape == "dict" else batch
            parts = []
            if sup is not None:
                parts.append(F.mse_loss(self.net(sup[0]), sup[1]))
            if unsup is not None:
                parts.append(self.net(unsup[0]).pow(2).mean() * 0.1)
            loss = sum(parts)
            self.losses.append(float(loss))
            self.seen.append([None if p is None else float(p[0].sum()) for p in (sup, unsup)])
            return loss

        def train_dataloader(self) -> Any:
            loaders = [
                DataLoader(labelled, batch_size=4, shuffle=True),
                DataLoader(unlabelled, batch_size=8, shuffle=True),
            ]
            given = {"sup": loaders[0], "unsup": loaders[1]} if shape == "dict" else loaders
            if mode is None:
                return given
            return importlib.import_module(f"{pl.__name__}.utilities").CombinedLoader(given, mode)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    return SemiSupervised


def _fit(pl: Any, shape: str, mode: str | None, tmp_path: Any, **trainer_args: Any) -> dict[str, Any]:
    pl.seed_everything(11)
    model = _program(pl, shape, mode)()
    trainer = pl.Trainer(max_epochs=3, default_root_dir=str(tmp_path), enable_checkpointing=False, **QUIET,
                         **trainer_args)  # fmt: skip
    trainer.fit(model)
    return {"losses": model.losses, "seen": model.seen, "global_step": trainer.global_step,
            "weights": {k: v.clone() for k, v in model.state_dict().items()}}  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "mode", "args"),
    [
        ("dict", None, {}),  # Lightning combines a dict of loaders in max_size_cycle mode
        ("list", None, {"limit_train_batches": 4}),
        ("dict", "min_size", {}),
        ("list", "max_size", {}),
        ("dict", "max_size_cycle", {"accumulate_grad_batches": 2}),
    ],
    ids=["dict", "list-limited", "min_size", "max_size", "cycle-accumulating"],
)
def test_several_training_loaders_train_as_in_lightning(shape, mode, args, tmp_path):
    ours = _fit(lightray, shape, mode, tmp_path / "ours", **args)
    theirs = _fit(lightning, shape, mode, tmp_path / "theirs", **args)
    assert ours["global_step"] == theirs["global_step"] > 0
    assert ours["seen"] == theirs["seen"]  # the same batches, in the same order
    assert ours["losses"] == pytest.approx(theirs["losses"], abs=1e-5)
    for key, value in ours["weights"].items():
        torch.testing.assert_close(value, theirs["weights"][key], rtol=0, atol=1e-5)


def test_a_combined_epoch_resumes_at_its_next_batch(tmp_path):
    uninterrupted = _fit(lightray, "dict", None, tmp_path / "whole")
    lightray.seed_everything(11)
    model = _program(lightray, "dict", None)()
    stop_at = 7  # inside the second epoch (5 batches each: the unlabelled loader is the longest)

    class Interrupt(lightray.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == stop_at:
                trainer.save_checkpoint(tmp_path / "mid.ckpt")
                raise KeyboardInterrupt

    trainer = lightray.Trainer(max_epochs=3, callbacks=[Interrupt()], default_root_dir=str(tmp_path / "part"),
                               enable_checkpointing=False, **QUIET)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(model)
    resumed_model = _program(lightray, "dict", None)()
    resumed = lightray.Trainer(max_epochs=3, default_root_dir=str(tmp_path / "rest"), enable_checkpointing=False,
                               **QUIET)  # fmt: skip
    resumed.fit(resumed_model, ckpt_path=str(tmp_path / "mid.ckpt"))
    assert model.losses[:stop_at] + resumed_model.losses == pytest.approx(uninterrupted["losses"], abs=1e-6)
    for key, value in resumed_model.state_dict().items():
        torch.testing.assert_close(value, uninterrupted["weights"][key], rtol=0, atol=1e-6)


def test_an_unknown_mode_names_the_modes():
    with pytest.raises(ValueError, match=r"Unsupported mode 'zip', please select one of: \('min_size'"):
        lightray.utilities.CombinedLoader([range(3)], mode="zip")

"""lightray.tuner against pytorch-lightning's: the learning-rate range test and the batch-size search on the same
program give the same rates, losses, suggestion and sizes, and leave the model as it was."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray

lightning = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")

QUIET = dict(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, logger=False,
             enable_checkpointing=False)  # fmt: skip


def _regression_model(pl: Any, oom_above: int | None = None, lr_in_hparams: bool = False) -> Any:
    """A small regressor with ``lr`` and ``batch_size`` attributes, reading its shuffled data in
    ``train_dataloader``; it raises CUDA's out-of-memory error for batches larger than ``oom_above``."""

    class Regressor(pl.LightningModule):
        def __init__(self, lr: float = 0.01, batch_size: int = 8) -> None:
            super().__init__()
            if lr_in_hparams:
                self.save_hyperparameters()
            else:
                self.lr = lr
            self.batch_size = batch_size
            self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
            generator = torch.Generator().manual_seed(1)
            self.x = torch.randn(256, 8, generator=generator)
            self.y = self.x @ torch.randn(8, 1, generator=generator) + 0.1 * torch.randn(256, 1, generator=generator)
            self.seen_batch_sizes: list[int] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            if oom_above is not None and len(x) > oom_above:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
            self.seen_batch_sizes.append(len(x))
            return F.mse_loss(self.net(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", F.mse_loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self) -> Any:
            lr = self.hparams.lr if lr_in_hparams else self.lr
            return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=True)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(self.x[:64], self.y[:64]), batch_size=32)

    return Regressor


def _tuner(pl: Any) -> Any:
    return importlib.import_module(f"{pl.__name__}.tuner").Tuner


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _lr_find_then_fit(pl: Any, tmp: Path, **lr_find_args: Any) -> dict[str, Any]:
    pl.seed_everything(0)
    model = _regression_model(pl)()
    before = _weights(model)
    trainer = pl.Trainer(max_epochs=2, default_root_dir=str(tmp), **QUIET)
    finder = _tuner(pl)(trainer).lr_find(model, **lr_find_args)
    restored = all(torch.equal(v, before[k]) for k, v in _weights(model).items())
    after_search_rng = torch.get_rng_state()
    trainer.fit(model)
    return {
        "lrs": finder.results["lr"],
        "losses": finder.results["loss"],
        "suggestion": finder.suggestion(),
        "model_lr": model.lr,
        "restored": restored,
        "rng_after_search": after_search_rng,
        "weights": _weights(model),
        "global_step": trainer.global_step,
        "leftover_files": sorted(p.name for p in tmp.glob(".lr_find*")),  # Lightning removes its snapshot file
    }


def _same(ours: Any, theirs: Any, what: str) -> None:
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), what
        for key in ours:
            _same(ours[key], theirs[key], f"{what}[{key}]")
    elif isinstance(ours, torch.Tensor):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=what)
    elif isinstance(ours, list) and ours and isinstance(ours[0], float):
        torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs), rtol=1e-5, atol=1e-6, equal_nan=True,
                                   msg=what)  # fmt: skip
    else:
        assert ours == pytest.approx(theirs, rel=1e-5), what


@pytest.mark.parametrize(
    "args",
    [
        dict(num_training=30),  # stops early: the loss diverges as the rate reaches 1
        dict(num_training=20, min_lr=1e-4, max_lr=0.1, mode="linear"),
        dict(num_training=40, early_stop_threshold=None),  # runs all 40 steps, over two epochs of 32 batches
    ],
    ids=["exponential-diverges", "linear", "no-early-stop"],
)
def test_lr_find_matches_lightning_and_the_next_fit_trains_with_the_suggestion(args, tmp_path):
    ours = _lr_find_then_fit(lightray, tmp_path / "ours", **args)
    theirs = _lr_find_then_fit(lightning, tmp_path / "theirs", **args)
    assert ours["restored"] and theirs["restored"]
    assert len(ours["lrs"]) == len(ours["losses"]) >= 12
    for key in ours:
        _same(ours[key], theirs[key], key)
    assert ours["model_lr"] == ours["suggestion"] != 0.01


def test_lr_find_reads_the_rate_from_hparams(tmp_path):
    model = _regression_model(lightray, lr_in_hparams=True)()
    finder = lightray.tuner.Tuner(lightray.Trainer(max_epochs=1, default_root_dir=str(tmp_path), **QUIET)).lr_find(
        model, num_training=15
    )
    assert model.hparams.lr == finder.suggestion() != 0.01


def test_learning_rate_finder_callback_searches_then_trains_in_the_same_fit(tmp_path):
    results = {}
    for pl in (lightray, lightning):
        pl.seed_everything(0)
        model = _regression_model(pl)()
        finder = pl.callbacks.LearningRateFinder(num_training_steps=20)
        trainer = pl.Trainer(max_epochs=1, callbacks=[finder], default_root_dir=str(tmp_path / pl.__name__),
                             num_sanity_val_steps=0, **QUIET)  # fmt: skip
        trainer.fit(model)
        results[pl.__name__] = {"lr": model.lr, "loss": finder.optimal_lr.results["loss"], "step": trainer.global_step,
                                "weights": _weights(model)}  # fmt: skip
    _same(results["lightray"], results["pytorch_lightning"], "callback")
    assert results["lightray"]["step"] == 32  # the full epoch after the search


def _scale(pl: Any, tmp: Path, oom_above: int | None, **args: Any) -> dict[str, Any]:
    pl.seed_everything(0)
    model = _regression_model(pl, oom_above=oom_above)()
    before = _weights(model)
    trainer = pl.Trainer(max_epochs=1, default_root_dir=str(tmp), **QUIET)
    found = _tuner(pl)(trainer).scale_batch_size(model, **args)
    restored = all(torch.equal(v, before[k]) for k, v in _weights(model).items())
    return {"found": found, "attribute": model.batch_size, "restored": restored, "seen": model.seen_batch_sizes,
            "global_step": trainer.global_step}  # fmt: skip


@pytest.mark.parametrize(
    ("oom_above", "args"),
    [
        (None, dict(max_trials=4)),
        (None, dict()),  # doubles until a batch holds the whole data set (256 samples)
        (24, dict(mode="power")),
        (24, dict(mode="binsearch", margin=0.1)),
        (40, dict(mode="binsearch", steps_per_trial=1, init_val=4)),
    ],
    ids=["max-trials", "whole-data-set", "power-oom", "binsearch-oom", "binsearch-one-step"],
)
def test_scale_batch_size_matches_lightning(oom_above, args, tmp_path):
    ours = _scale(lightray, tmp_path / "ours", oom_above, **args)
    theirs = _scale(lightning, tmp_path / "theirs", oom_above, **args)
    assert ours == theirs
    assert ours["restored"] and ours["attribute"] == ours["found"]


def test_the_tuner_refuses_what_lightning_refuses(tmp_path):
    trainer = lightray.Trainer(max_epochs=1, default_root_dir=str(tmp_path), **QUIET)
    model = _regression_model(lightray)()
    with pytest.raises(lightray.MisconfigurationError, match="method='fit' is the only valid configuration"):
        lightray.tuner.Tuner(trainer).lr_find(model, method="test")
    with pytest.raises(lightray.MisconfigurationError, match="cannot be used with dataloaders passed directly"):
        lightray.tuner.Tuner(trainer).scale_batch_size(model, train_dataloaders=model.train_dataloader())

    class NoRate(_regression_model(lightray)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            del self.lr

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(lightray.MisconfigurationError, match=r"should have one of these fields: \('lr', 'learning"):
        lightray.tuner.Tuner(trainer).lr_find(NoRate())


def test_the_tuner_on_a_ray_trainer_says_where_it_runs(tmp_path):
    trainer = lightray.Trainer(max_epochs=1, num_workers=2, default_root_dir=str(tmp_path), **QUIET)
    with pytest.raises(lightray.MisconfigurationError, match="without `num_workers`.*then train on Ray"):
        lightray.tuner.Tuner(trainer).lr_find(_regression_model(lightray)())


def test_lr_finder_plot_marks_the_suggestion(tmp_path):
    pytest.importorskip("matplotlib", reason="LRFinder.plot needs the viz extra")
    import matplotlib

    matplotlib.use("Agg")
    trainer = lightray.Trainer(max_epochs=1, default_root_dir=str(tmp_path), **QUIET)
    finder = lightray.tuner.Tuner(trainer).lr_find(_regression_model(lightray)(), num_training=20)
    figure = finder.plot(suggest=True)
    axes = figure.axes[0]
    assert axes.get_xscale() == "log" and len(axes.lines) == 2  # the curve and the suggested point
    figure.savefig(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 5000

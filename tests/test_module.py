"""LightningModule features: optimizers and schedulers, logging, hyperparameters, manual optimization."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

import lightray as pl
from lightray.testing import BoringModel, RandomDataset


def _opt(module):
    return torch.optim.SGD(module.parameters(), lr=0.1)


@pytest.mark.parametrize(
    "form",
    ["single", "list", "tuple_lists", "dict", "dict_sched_dict", "list_of_dicts", "none"],
)
def test_configure_optimizers_forms(quiet, form):
    class Model(BoringModel):
        def configure_optimizers(self):
            opt = _opt(self)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            return {
                "single": opt,
                "list": [opt],
                "tuple_lists": ([opt], [sched]),
                "dict": {"optimizer": opt, "lr_scheduler": sched},
                "dict_sched_dict": {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}},
                "list_of_dicts": [{"optimizer": opt, "lr_scheduler": sched}],
                "none": None,
            }[form]

    model = Model()
    before = model.layer.weight.clone()
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, **quiet)
    trainer.fit(model)
    changed = not torch.equal(before, model.layer.weight)
    assert changed == (form != "none")
    if form != "none":
        expected = {"single": 0.1, "list": 0.1, "dict_sched_dict": 0.1 * 0.5**6}.get(form, 0.1 * 0.5**2)
        assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(expected)
    assert trainer.global_step == 6


def test_scheduler_frequency_and_step_interval(quiet):
    class Model(BoringModel):
        def configure_optimizers(self):
            opt = _opt(self)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 3}}

    trainer = pl.Trainer(max_epochs=1, limit_train_batches=7, limit_val_batches=0, **quiet)
    trainer.fit(Model())
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)  # after batches 3 and 6


def test_training_step_none_skips_the_batch(quiet):
    class Skipping(BoringModel):
        def training_step(self, batch, batch_idx):
            return None if batch_idx % 2 else self.loss(batch)

    model = Skipping()
    weights = []

    class Watch(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            weights.append((outputs, pl_module.layer.weight.clone()))

    pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=0, callbacks=[Watch()], **quiet).fit(model)
    assert [bool(out) for out, _ in weights] == [True, False, True, False]
    assert torch.equal(weights[1][1], weights[0][1])  # the skipped batch changed nothing
    assert not torch.equal(weights[2][1], weights[1][1])


def test_log_defaults_and_weighted_epoch_mean(quiet):
    values = torch.arange(10, dtype=torch.float32)

    class Logging(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("step_only", values[batch_idx])
            self.log("both", values[batch_idx], on_step=True, on_epoch=True)
            self.log("total", values[batch_idx], on_epoch=True, on_step=False, reduce_fx="sum")
            self.log("biggest", values[batch_idx], on_epoch=True, on_step=False, reduce_fx="max")
            return self.loss(batch)

        def validation_step(self, batch, batch_idx):
            # batches of 4, 4, 2: a mean weighted by batch size differs from the mean of batch means
            self.log("val_weighted", batch.shape[0] * 1.0)
            self.log("val_min", float(batch_idx), reduce_fx="min", prog_bar=True)

        def val_dataloader(self):
            return DataLoader(RandomDataset(32, 10), batch_size=4)

    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, **quiet)
    trainer.fit(Logging())
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert metrics["step_only"] == 3.0  # the last step's value
    assert metrics["both_step"] == 3.0
    assert metrics["both_epoch"] == metrics["both"] == pytest.approx(1.5)
    assert metrics["total"] == 6.0
    assert metrics["biggest"] == 3.0
    assert metrics["val_weighted"] == pytest.approx((4 * 4 + 4 * 4 + 2 * 2) / 10)
    assert metrics["val_min"] == 0.0
    assert "val_min" in trainer.progress_bar_metrics and "step_only" not in trainer.progress_bar_metrics


def test_log_dict_and_dataloader_idx(quiet):
    class TwoLoaders(BoringModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log_dict({"a": float(dataloader_idx), "b": 1.0})

        def val_dataloader(self):
            return [DataLoader(RandomDataset(32, 4), batch_size=2), DataLoader(RandomDataset(32, 6), batch_size=2)]

    results = pl.Trainer(**quiet).validate(TwoLoaders(), verbose=False)
    assert results == [
        {"a/dataloader_idx_0": 0.0, "b/dataloader_idx_0": 1.0},
        {"a/dataloader_idx_1": 1.0, "b/dataloader_idx_1": 1.0},
    ]


def test_log_torchmetrics_metric(quiet):
    torchmetrics = pytest.importorskip("torchmetrics", reason="torchmetrics comes with the dev extra")

    class WithMetric(BoringModel):
        def __init__(self):
            super().__init__()
            self.mean = torchmetrics.MeanMetric()

        def validation_step(self, batch, batch_idx):
            self.mean(torch.tensor(float(batch_idx)))
            self.log("val_mean", self.mean)

    results = pl.Trainer(limit_val_batches=5, **quiet).validate(WithMetric(), verbose=False)
    assert results[0]["val_mean"] == pytest.approx(2.0)


def test_properties_inside_hooks(quiet, capsys):
    seen = {}

    class Props(BoringModel):
        def training_step(self, batch, batch_idx):
            seen.update(
                device=self.device, epoch=self.current_epoch, step=self.global_step, rank=self.global_rank,
                local=self.local_rank, trainer=self.trainer, logger=self.logger,
            )  # fmt: skip
            self.print("hello from rank zero")
            return self.loss(batch)

    trainer = pl.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, **quiet)
    model = Props()
    trainer.fit(model)
    assert seen == dict(device=torch.device("cpu"), epoch=1, step=5, rank=0, local=0, trainer=trainer, logger=None)
    assert "hello from rank zero" in capsys.readouterr().out
    assert (trainer.current_epoch, trainer.global_step) == (2, 6)


def test_module_without_trainer_says_so():
    with pytest.raises(RuntimeError, match="not attached to a `Trainer`"):
        BoringModel().trainer  # noqa: B018


def test_save_hyperparameters_forms():
    class All(pl.LightningModule):
        def __init__(self, lr=0.1, layers=2, name="x", net=None):
            super().__init__()
            self.save_hyperparameters(ignore="net")

    class Some(pl.LightningModule):
        def __init__(self, lr=0.1, layers=2):
            super().__init__()
            self.save_hyperparameters("lr")

    class FromDict(pl.LightningModule):
        def __init__(self, config):
            super().__init__()
            self.save_hyperparameters(config)

    class Child(All):
        def __init__(self, extra=5, **kwargs):
            super().__init__(**kwargs)

    assert All(lr=0.5, net=torch.nn.Linear(1, 1)).hparams == {"lr": 0.5, "layers": 2, "name": "x"}
    assert Some(layers=3).hparams == {"lr": 0.1}
    assert FromDict({"a": 1}).hparams.a == 1
    assert Child(extra=7, lr=0.2).hparams == {"lr": 0.2, "layers": 2, "name": "x", "extra": 7}


def test_manual_optimization_optimizers_schedulers_and_clipping(quiet):
    norms = []

    class Manual(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            sched = self.lr_schedulers()
            assert isinstance(opt.optimizer, torch.optim.SGD)
            loss = self.loss(batch) * 100
            opt.zero_grad()
            self.manual_backward(loss)
            self.clip_gradients(opt, gradient_clip_val=0.01, gradient_clip_algorithm="norm")
            norms.append(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in self.parameters()])))
            opt.step()
            sched.step()

        def configure_optimizers(self):
            opt = _opt(self)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, **quiet)
    trainer.fit(Manual())
    assert all(n <= 0.01 + 1e-6 for n in norms)
    assert trainer.global_step == 3
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_manual_backward_requires_manual_optimization(quiet):
    class Wrong(BoringModel):
        def training_step(self, batch, batch_idx):
            self.manual_backward(self.loss(batch))

    with pytest.raises(pl.MisconfigurationError, match="automatic_optimization = False"):
        pl.Trainer(max_steps=1, **quiet).fit(Wrong())


def test_configure_callbacks_and_freeze(quiet):
    seen = []

    class Marker(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            seen.append("fit_start")

    class WithCallbacks(BoringModel):
        def configure_callbacks(self):
            return [Marker()]

    model = WithCallbacks()
    pl.Trainer(max_steps=1, **quiet).fit(model)
    assert seen == ["fit_start"]
    model.freeze()
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    model.unfreeze()
    assert all(p.requires_grad for p in model.parameters()) and model.training

"""Each kind of bad input gets one clear error that names the problem and the fix."""

from __future__ import annotations

import pytest
import torch

import lightray as pl
from lightray.testing import BoringModel


def test_module_without_configure_optimizers(quiet):
    class NoOptim(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(32, 2)

        def training_step(self, batch, batch_idx):
            return self.layer(batch).sum()

        def train_dataloader(self):
            return BoringModel().train_dataloader()

    with pytest.raises(pl.MisconfigurationError, match="configure_optimizers.*torch.optim.Adam"):
        pl.Trainer(max_epochs=1, **quiet).fit(NoOptim())


@pytest.mark.parametrize("returned", ["a string", 3, [1, 2]])
def test_training_step_returning_wrong_type(quiet, returned):
    class Wrong(BoringModel):
        def training_step(self, batch, batch_idx):
            return returned

    with pytest.raises(pl.MisconfigurationError, match="training_step` returned a .*loss tensor"):
        pl.Trainer(max_steps=1, **quiet).fit(Wrong())


def test_training_step_dict_without_loss(quiet):
    class NoLoss(BoringModel):
        def training_step(self, batch, batch_idx):
            return {"value": self.loss(batch)}

    with pytest.raises(pl.MisconfigurationError, match="without a 'loss' key.*got keys \\['value'\\]"):
        pl.Trainer(max_steps=1, **quiet).fit(NoLoss())


def test_lightning_1x_hooks_name_their_replacements(quiet):
    class Old(BoringModel):
        def training_epoch_end(self, outputs):
            pass

        def validation_epoch_end(self, outputs):
            pass

    with pytest.raises(pl.MisconfigurationError) as err:
        pl.Trainer(max_steps=1, **quiet).fit(Old())
    message = str(err.value)
    assert "`training_epoch_end` -> use `on_train_epoch_end" in message
    assert "`validation_epoch_end` -> use `on_validation_epoch_end" in message


def test_lightning_1x_callback_hook(quiet):
    class OldCallback(pl.Callback):
        def on_epoch_end(self, trainer, pl_module):
            pass

    with pytest.raises(pl.MisconfigurationError, match="`on_epoch_end` -> use `on_train_epoch_end"):
        pl.Trainer(callbacks=[OldCallback()], **quiet)


def test_log_of_non_scalar_tensor(quiet):
    class LogsVector(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("vector", torch.ones(3))
            return self.loss(batch)

    with pytest.raises(pl.MisconfigurationError, match=r"needs a scalar, got a tensor of shape \(3,\).*mean"):
        pl.Trainer(max_steps=1, **quiet).fit(LogsVector())


def test_log_in_a_hook_that_cannot_log(quiet):
    class LogsInSetup(BoringModel):
        def on_fit_start(self):
            self.log("x", 1.0)

    with pytest.raises(pl.MisconfigurationError, match="can't `self.log\\('x', ...\\)` inside `on_fit_start`"):
        pl.Trainer(max_steps=1, **quiet).fit(LogsInSetup())


def test_monitored_metric_never_logged_lists_logged_names(quiet):
    class Plateau(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_accuracy"}}

    with pytest.raises(pl.MisconfigurationError) as err:
        pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, **quiet).fit(Plateau())
    assert "'val_accuracy'" in str(err.value)
    assert "['train_loss', 'val_loss']" in str(err.value)


def test_plateau_scheduler_without_monitor(quiet):
    class Plateau(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return [opt], [torch.optim.lr_scheduler.ReduceLROnPlateau(opt)]

    with pytest.raises(pl.MisconfigurationError, match="ReduceLROnPlateau` scheduler needs a metric to monitor"):
        pl.Trainer(max_epochs=1, **quiet).fit(Plateau())


def test_manual_optimization_with_gradient_clip_val(quiet):
    class Manual(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(pl.MisconfigurationError, match="automatic optimization only.*self.clip_gradients"):
        pl.Trainer(max_steps=1, gradient_clip_val=1.0, **quiet).fit(Manual())


def test_several_bad_trainer_arguments_in_one_error():
    with pytest.raises(pl.MisconfigurationError) as err:
        pl.Trainer(max_epochs=-5, limit_train_batches=1.5, precision="fp8", accumulate_grad_batches=0)
    message = str(err.value)
    assert "Invalid Trainer arguments (4)" in message
    assert "max_epochs=-5" in message
    assert "limit_train_batches=1.5" in message
    assert "precision='fp8'" in message and "'bf16-mixed'" in message
    assert "accumulate_grad_batches=0" in message


def test_fp16_on_cpu_suggests_bf16():
    with pytest.raises(pl.MisconfigurationError, match="use 'bf16-mixed'"):
        pl.Trainer(accelerator="cpu", precision="16-mixed")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
def test_gpu_requested_without_a_gpu():
    with pytest.raises(pl.MisconfigurationError, match="no CUDA GPU is visible"):
        pl.Trainer(accelerator="gpu")


def test_unknown_device_spec():
    with pytest.raises(pl.MisconfigurationError, match=r"devices='many': use 'auto', 1 or \[index\]"):
        pl.Trainer(accelerator="cpu", devices="many")


def test_multiple_optimizers_need_manual_optimization(quiet):
    class Two(BoringModel):
        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.Adam(self.parameters())]

    with pytest.raises(pl.MisconfigurationError, match="automatic_optimization = False"):
        pl.Trainer(max_steps=1, **quiet).fit(Two())


def test_unknown_optimizer_form(quiet):
    class Weird(BoringModel):
        def configure_optimizers(self):
            return "adam"

    with pytest.raises(pl.MisconfigurationError, match="not a supported form"):
        pl.Trainer(max_steps=1, **quiet).fit(Weird())


def test_unknown_scheduler_key(quiet):
    class Typo(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.StepLR(opt, 1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "intervall": "step"}}

    with pytest.raises(pl.MisconfigurationError, match="Unknown keys \\['intervall'\\]"):
        pl.Trainer(max_steps=1, **quiet).fit(Typo())


def test_fraction_of_loader_smaller_than_one_batch(quiet):
    with pytest.raises(pl.MisconfigurationError, match="less than one batch"):
        pl.Trainer(max_steps=1, limit_train_batches=0.01, **quiet).fit(BoringModel())


def test_fit_with_a_plain_module(quiet):
    with pytest.raises(pl.MisconfigurationError, match="expects a `lightray.LightningModule`"):
        pl.Trainer(**quiet).fit(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_optimizer_step_override_that_skips_the_closure(quiet):
    class Skips(BoringModel):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            pass  # forgot to call optimizer.step(closure=optimizer_closure)

    with pytest.raises(pl.MisconfigurationError, match="closure was not run"):
        pl.Trainer(max_steps=1, **quiet).fit(Skips())


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(callbacks=[object()]), "callbacks[0]=<object object"),
        (dict(logger="csv"), "logger='csv': not a logger"),
        (dict(default_root_dir=123), "default_root_dir=123: must be a folder path"),
        (dict(enable_checkpointing="no"), "enable_checkpointing='no': must be True or False"),
        (dict(num_workers=2, devices=4), "devices=4 with num_workers=2: each Ray Train worker has one device"),
    ],
)
def test_bad_trainer_inputs_name_the_argument_and_the_fix(kwargs, fragment):
    with pytest.raises(pl.MisconfigurationError, match="Invalid Trainer arguments") as err:
        pl.Trainer(**kwargs)
    assert fragment in str(err.value)


def test_a_module_that_skipped_super_init(quiet):
    class Forgot(BoringModel):
        def __init__(self) -> None:  # no super().__init__()
            pass

    with pytest.raises(pl.MisconfigurationError, match=r"`Forgot.__init__` did not call `super\(\).__init__\(\)`"):
        pl.Trainer(max_steps=1, **quiet).fit(Forgot())


def test_a_loss_without_grad(quiet):
    class Detached(BoringModel):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx)["loss"].detach()

    with pytest.raises(pl.MisconfigurationError, match="loss with no gradient to follow.*detached"):
        pl.Trainer(max_steps=1, **quiet).fit(Detached())


def test_tune_report_callback_outside_a_tune_trial_fails_at_fit_saying_where_it_belongs(quiet):
    import ray.tune  # noqa: F401  (imported, as in a script that runs searches: still no trial in this process)

    from lightray.tune import TuneReportCallback

    model = BoringModel()
    trainer = pl.Trainer(max_epochs=1, callbacks=[TuneReportCallback("train_loss")], **quiet)
    with pytest.raises(pl.MisconfigurationError, match=r"outside a Ray Tune trial.*ray\.tune\.Tuner\(train_fn"):
        trainer.fit(model)
    assert trainer.global_step == 0  # it stopped before training, not after a run that reported nothing

"""StochasticWeightAveraging compared with Lightning's on the same programs: final weights and BatchNorm buffers,
the learning rate of each epoch, the callback's checkpoint state, resuming, and the errors for bad arguments."""

from __future__ import annotations

import pytest
import torch

import lightray as pl
from lightray.callbacks import ModelCheckpoint, StochasticWeightAveraging

lightning = pytest.importorskip("pytorch_lightning", reason="comparisons need the dev extra")


def swa_program(framework, batch_norm=True, validate=False, scheduler=None, momentum=0.9, param_groups=1):
    class Net(framework.LightningModule):
        """A small regression net; records the optimizer's learning rate at each epoch start."""

        def __init__(self):
            super().__init__()
            norm = torch.nn.BatchNorm1d(8) if batch_norm else torch.nn.Identity()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), norm, torch.nn.ReLU(), torch.nn.Linear(8, 1))
            self.lrs: list[list[float]] = []

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def on_train_epoch_start(self):
            self.lrs.append([group["lr"] for group in self.trainer.optimizers[0].param_groups])

        def configure_optimizers(self):
            if param_groups == 1:
                params = self.parameters()
            else:
                params = [{"params": self.net[0].parameters()}, {"params": self.net[3].parameters(), "lr": 0.05}]
            optimizer = torch.optim.SGD(params, lr=0.1, momentum=momentum)
            if scheduler == "step":
                return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)]
            if scheduler == "two":
                first = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
                return [optimizer], [first, torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.9)]
            return optimizer

        def loader(self, shuffle):
            x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
            dataset = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
            return torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=shuffle)

        def train_dataloader(self):
            return self.loader(shuffle=True)

        if validate:

            def validation_step(self, batch, batch_idx):
                x, y = batch
                self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

            def val_dataloader(self):
                return self.loader(shuffle=False)

    return Net


def fit(framework, quiet, swa_kwargs, program_kwargs=None, callbacks=(), ckpt_path=None, **trainer_kwargs):
    framework.seed_everything(0)
    model = swa_program(framework, **(program_kwargs or {}))()
    swa_class = StochasticWeightAveraging if framework is pl else lightning.callbacks.StochasticWeightAveraging
    swa = swa_class(**swa_kwargs)
    kwargs = {**quiet, "max_epochs": 5, "num_sanity_val_steps": 0, **trainer_kwargs}
    trainer = framework.Trainer(callbacks=[swa, *callbacks], **kwargs)
    trainer.fit(model, ckpt_path=ckpt_path)
    return model, trainer, swa


def assert_same_state(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key].dtype == value.dtype, key
        torch.testing.assert_close(ours[key], value, atol=1e-5, rtol=0, msg=key)


def assert_same_lrs(ours: list[list[float]], theirs: list[list[float]]) -> None:
    """The learning rates of each parameter group at each epoch start."""
    assert len(ours) == len(theirs)
    torch.testing.assert_close(torch.tensor(ours, dtype=torch.float64), torch.tensor(theirs, dtype=torch.float64))


CASES = {
    "batchnorm": (dict(swa_lrs=0.05, swa_epoch_start=2), {}, {}),
    "batchnorm-validating": (dict(swa_lrs=0.05, swa_epoch_start=2), dict(validate=True), {}),
    "batchnorm-scheduler-linear": (
        dict(swa_lrs=0.02, swa_epoch_start=0.6, annealing_strategy="linear", annealing_epochs=2),
        dict(scheduler="step"), {},
    ),
    "batchnorm-limited-batches": (dict(swa_lrs=0.05, swa_epoch_start=3), {}, dict(limit_train_batches=3)),
    "batchnorm-accumulating": (dict(swa_lrs=0.05, swa_epoch_start=0.4), {}, dict(accumulate_grad_batches=2)),
    "no-batchnorm": (dict(swa_lrs=0.05, swa_epoch_start=2), dict(batch_norm=False), {}),
    "no-batchnorm-scheduler-validating": (
        dict(swa_lrs=0.03), dict(batch_norm=False, scheduler="step", validate=True), {},
    ),
    "param-groups": (dict(swa_lrs=[0.01, 0.02], swa_epoch_start=1, annealing_epochs=3), dict(param_groups=2), {}),
    "start-at-0.0": (dict(swa_lrs=0.05, swa_epoch_start=0.0), dict(momentum=0.0), {}),
    "own-avg-fn-device-none": (
        dict(swa_lrs=0.05, swa_epoch_start=2, avg_fn=lambda avg, new, n: 0.5 * avg + 0.5 * new, device=None), {}, {},
    ),
}  # fmt: skip


@pytest.mark.parametrize(("swa_kwargs", "program_kwargs", "trainer_kwargs"), CASES.values(), ids=CASES.keys())
def test_same_weights_batchnorm_buffers_and_lrs_as_lightning(quiet, swa_kwargs, program_kwargs, trainer_kwargs):
    ours, ours_trainer, _ = fit(pl, quiet, swa_kwargs, program_kwargs, **trainer_kwargs)
    theirs, theirs_trainer, _ = fit(lightning, quiet, swa_kwargs, program_kwargs, **trainer_kwargs)

    assert_same_state(ours.state_dict(), theirs.state_dict())  # weights and BatchNorm buffers
    assert_same_lrs(ours.lrs, theirs.lrs)  # with BatchNorm: one epoch more
    assert (ours_trainer.current_epoch, ours_trainer.global_step, ours_trainer.max_epochs) == (
        theirs_trainer.current_epoch, theirs_trainer.global_step, theirs_trainer.max_epochs,
    )  # fmt: skip
    assert ours_trainer.accumulate_grad_batches == theirs_trainer.accumulate_grad_batches


def test_the_averaged_weights_reach_the_module(quiet):
    """Without BatchNorm the module ends with exactly the average, not its last trained weights."""
    seen: dict[str, dict[str, torch.Tensor]] = {}

    class Watch(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen["trained"] = {k: v.clone() for k, v in pl_module.state_dict().items()}

        def on_train_end(self, trainer, pl_module):
            swa = next(cb for cb in trainer.callbacks if isinstance(cb, StochasticWeightAveraging))
            seen["average"] = {k: v.clone() for k, v in swa.average_model.state_dict().items()}

    model, trainer, swa = fit(pl, quiet, dict(swa_lrs=0.05, swa_epoch_start=3), dict(batch_norm=False), [Watch()])
    assert int(swa.n_averaged) == 3  # the starts of epochs 2, 3 and 4
    for key, value in model.state_dict().items():
        assert torch.equal(value, seen["average"][key])
    assert any(not torch.equal(value, seen["trained"][key]) for key, value in model.state_dict().items())
    assert type(trainer.lr_scheduler_configs[0].scheduler).__name__ == "SWALR"


def test_swa_that_never_starts_leaves_the_trained_weights(quiet):
    # Lightning copies its setup-time copy of the module (the initial weights) back here; lightray transfers an
    # average only when it holds one
    model, _, swa = fit(pl, quiet, dict(swa_lrs=0.05, swa_epoch_start=9), dict(batch_norm=False))
    pl.seed_everything(0)
    plain = swa_program(pl, batch_norm=False)()
    pl.Trainer(max_epochs=5, num_sanity_val_steps=0, **quiet).fit(plain)
    assert int(swa.n_averaged) == 0
    assert_same_state(model.state_dict(), plain.state_dict())


def test_batchnorm_epoch_restores_the_trainer(quiet):
    model, trainer, swa = fit(pl, quiet, dict(swa_lrs=0.05, swa_epoch_start=2), accumulate_grad_batches=2)
    assert trainer.current_epoch == 6  # max_epochs + 1
    assert trainer.max_epochs == 5 and trainer.accumulate_grad_batches == 2
    norm = model.net[1]
    assert norm.momentum == 0.1  # restored after the cumulative average
    assert int(norm.num_batches_tracked) == 5  # statistics of the extra epoch only


def test_checkpoint_state_matches_lightnings(quiet):
    _, _, ours = fit(pl, quiet, dict(swa_lrs=0.05, swa_epoch_start=2))
    _, _, theirs = fit(lightning, quiet, dict(swa_lrs=0.05, swa_epoch_start=2))
    mine, expected = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == expected.keys()
    assert (mine["n_averaged"], mine["latest_update_epoch"]) == (
        expected["n_averaged"],
        expected["latest_update_epoch"],
    )
    assert mine["n_averaged"] == 4
    assert mine["scheduler_state"] == expected["scheduler_state"]
    # the average's parameters (its buffers are Lightning's setup-time copy, never used, so they are not compared)
    parameters = {k for k in expected["average_model_state"] if "running" not in k and "num_batches" not in k}
    assert_same_state(
        {k: mine["average_model_state"][k] for k in parameters},
        {k: expected["average_model_state"][k] for k in parameters},
    )


@pytest.mark.parametrize("batch_norm", [True, False], ids=["batchnorm", "no-batchnorm"])
@pytest.mark.parametrize("resume_epoch", [0, 2, 3])
def test_resume_mid_swa_gives_the_uninterrupted_result(tmp_path, quiet, batch_norm, resume_epoch):
    swa_kwargs, program = dict(swa_lrs=0.05, swa_epoch_start=2), dict(batch_norm=batch_norm, validate=True)
    uninterrupted, _, _ = fit(lightning, quiet, swa_kwargs, program)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, filename="{epoch}")
    first, _, _ = fit(pl, {**quiet, "enable_checkpointing": True}, swa_kwargs, program, [saver])
    assert_same_state(first.state_dict(), uninterrupted.state_dict())

    checkpoint = tmp_path / "ckpts" / f"epoch={resume_epoch}.ckpt"
    resumed, trainer, swa = fit(pl, quiet, swa_kwargs, program, ckpt_path=str(checkpoint))
    assert_same_state(resumed.state_dict(), uninterrupted.state_dict())
    assert trainer.current_epoch == (6 if batch_norm else 5)
    assert_same_lrs(resumed.lrs, uninterrupted.lrs[resume_epoch + 1 :])


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")  # Lightning's, about its ModelCheckpoint
@pytest.mark.parametrize("batch_norm", [True, False], ids=["batchnorm", "no-batchnorm"])
def test_resume_from_a_lightning_checkpoint_as_lightning_does(tmp_path, quiet, batch_norm):
    # Lightning's own resume is not exact (its uninterrupted run ends elsewhere); lightray continues from Lightning's
    # checkpoint, SWA state included, as Lightning does
    swa_kwargs, program = dict(swa_lrs=0.05, swa_epoch_start=2), dict(batch_norm=batch_norm)
    saver = lightning.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, filename="{epoch}")
    fit(lightning, {**quiet, "enable_checkpointing": True}, swa_kwargs, program, callbacks=[saver])
    checkpoint = str(tmp_path / "ckpts" / "epoch=2.ckpt")
    theirs, _, _ = fit(lightning, quiet, swa_kwargs, program, ckpt_path=checkpoint)
    ours, _, swa = fit(pl, quiet, swa_kwargs, program, ckpt_path=checkpoint)
    assert_same_state(ours.state_dict(), theirs.state_dict())
    assert_same_lrs(ours.lrs, theirs.lrs)
    assert int(swa.n_averaged) == 4


BAD_ARGUMENTS = [
    (dict(swa_lrs=0.1, swa_epoch_start=0), "swa_epoch_start=0"),
    (dict(swa_lrs=0.1, swa_epoch_start=-2), "swa_epoch_start=-2"),
    (dict(swa_lrs=0.1, swa_epoch_start=1.5), "swa_epoch_start=1.5"),
    (dict(swa_lrs=-0.1), "swa_lrs=-0.1"),
    (dict(swa_lrs=0.0), "swa_lrs=0.0"),
    (dict(swa_lrs=1), "write 1.0, not 1"),
    (dict(swa_lrs=[0.1, -0.2]), "swa_lrs=[0.1, -0.2]"),
    (dict(swa_lrs="0.1"), "swa_lrs='0.1'"),
    (dict(swa_lrs=0.1, avg_fn=3), "avg_fn=3"),
    (dict(swa_lrs=0.1, device=3), "device=3"),
]


@pytest.mark.parametrize(("kwargs", "named"), BAD_ARGUMENTS, ids=[str(k) for k, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_refused_like_lightning(kwargs, named):
    with pytest.raises(lightning.utilities.exceptions.MisconfigurationException) as theirs:
        lightning.callbacks.StochasticWeightAveraging(**kwargs)
    with pytest.raises(pl.MisconfigurationError) as ours:
        StochasticWeightAveraging(**kwargs)
    message = str(ours.value)
    assert named in message
    # Lightning's words, then the fix
    assert str(theirs.value).split(".")[0].replace("should a", "should be a").lower() in message.lower()
    assert "e.g." in message or "such as" in message or "or None" in message


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        (dict(swa_lrs=0.1, annealing_strategy="exp"), "annealing_strategy='exp'): use 'cos' or 'linear'"),
        (dict(swa_lrs=0.1, annealing_epochs=-1), "annealing_epochs=-1"),
    ],
)
def test_what_lightning_leaves_to_swalr_is_refused_at_once(kwargs, named):
    with pytest.raises(pl.MisconfigurationError) as ours:
        StochasticWeightAveraging(**kwargs)
    assert named in str(ours.value)


@pytest.mark.parametrize(
    ("swa_kwargs", "program_kwargs", "trainer_kwargs", "lightning_says", "ours_says"),
    [
        (dict(swa_lrs=0.1), dict(scheduler="two"), {}, "more than 1 `lr_scheduler`", "at most one; .* gave 2"),
        (
            dict(swa_lrs=0.1, swa_epoch_start=0.5), {}, dict(max_epochs=-1, max_steps=20),
            "not supported when `max_epochs=-1`", r"swa_epoch_start=0.5.*Pass the epoch to start at as an int",
        ),
        (dict(swa_lrs=[0.1, 0.2, 0.3]), dict(param_groups=2), {}, None, r"3 learning rates .* 2 parameter groups"),
    ],
)  # fmt: skip
def test_fit_time_errors(quiet, swa_kwargs, program_kwargs, trainer_kwargs, lightning_says, ours_says):
    if lightning_says is not None:
        with pytest.raises(lightning.utilities.exceptions.MisconfigurationException, match=lightning_says):
            fit(lightning, quiet, swa_kwargs, program_kwargs, **trainer_kwargs)
    with pytest.raises(pl.MisconfigurationError, match=ours_says):
        fit(pl, quiet, swa_kwargs, program_kwargs, **trainer_kwargs)


def test_several_optimizers_are_refused(quiet):
    class TwoOptimizers(swa_program(pl)):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return [
                torch.optim.SGD(self.net[0].parameters(), lr=0.1),
                torch.optim.SGD(self.net[3].parameters(), lr=0.1),
            ]

    trainer = pl.Trainer(max_epochs=1, callbacks=[StochasticWeightAveraging(swa_lrs=0.1)], **quiet)
    with pytest.raises(pl.MisconfigurationError, match="exactly one optimizer; `configure_optimizers` gave 2"):
        trainer.fit(TwoOptimizers())

"""Checkpoint files: format, storage, safe loading, Lightning interop, and every kind of bad input."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

import lightray as pl
from lightray import storage
from lightray.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightray.checkpoint import CheckpointError, load_checkpoint_file
from lightray.testing import BoringModel

# what Lightning itself writes into a checkpoint (and reads back)
LIGHTNING_KEYS = {"epoch", "global_step", "state_dict", "loops", "callbacks", "optimizer_states", "lr_schedulers",
                  "hyper_parameters"}  # fmt: skip


class HModel(BoringModel):
    def __init__(self, size: int = 32, lr: float = 0.1, tags: tuple = ("a",), net: torch.nn.Module | None = None):
        super().__init__(size=size)
        self.save_hyperparameters(ignore="net")


QUIET_FIT = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)


def trained(tmp_path, **kwargs):
    model = HModel(lr=0.2)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=2, default_root_dir=tmp_path,
                         enable_progress_bar=False, enable_model_summary=False, **kwargs)  # fmt: skip
    trainer.fit(model)
    return model, trainer


def test_checkpoint_has_lightning_keys_and_resume_state(tmp_path):
    model, trainer = trained(tmp_path)
    path = trainer.checkpoint_callback.best_model_path
    assert os.path.basename(path) == "epoch=0-step=4.ckpt"
    assert path.startswith(str(tmp_path / "lightning_logs" / "version_0" / "checkpoints"))
    ckpt = torch.load(path, weights_only=True)
    extra = {"hparams_name", "lightray_version", "pytorch-lightning_version", "rng_states"}
    for key in LIGHTNING_KEYS | extra:
        assert key in ckpt, key  # fmt: skip
    assert ckpt["hyper_parameters"] == {"size": 32, "lr": 0.2, "tags": ("a",)}
    assert set(ckpt["rng_states"]) >= {"torch", "numpy", "python"}
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 0
    assert torch.equal(ckpt["state_dict"]["layer.weight"], model.layer.weight)


def test_save_and_load_from_checkpoint_with_overrides_and_map_location(tmp_path):
    model, trainer = trained(tmp_path)
    path = str(tmp_path / "manual.ckpt")
    trainer.save_checkpoint(path)
    loaded = HModel.load_from_checkpoint(path, map_location="cpu", lr=0.5)
    assert loaded.hparams.lr == 0.5 and loaded.hparams.size == 32
    assert torch.equal(loaded.layer.weight, model.layer.weight)
    assert not loaded.training


def test_weights_only_checkpoint(tmp_path):
    _, trainer = trained(tmp_path)
    path = str(tmp_path / "weights.ckpt")
    trainer.save_checkpoint(path, weights_only=True)
    ckpt = torch.load(path, weights_only=True)
    assert "optimizer_states" not in ckpt and "state_dict" in ckpt
    HModel.load_from_checkpoint(path)
    with pytest.raises(CheckpointError, match="weights only"):
        pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False).fit(HModel(), ckpt_path=path)


def test_file_uri_storage(tmp_path):
    _, trainer = trained(tmp_path)
    uri = f"file://{tmp_path}/uri/model.ckpt"
    trainer.save_checkpoint(uri)
    assert os.path.exists(tmp_path / "uri" / "model.ckpt")
    assert storage.exists(uri) and storage.listdir(f"file://{tmp_path}/uri") == ["model.ckpt"]
    assert torch.equal(HModel.load_from_checkpoint(uri).layer.weight, trainer.lightning_module.layer.weight)


def test_model_checkpoint_to_file_uri_and_resume_from_best(tmp_path):
    callback = ModelCheckpoint(dirpath=f"file://{tmp_path}/ck", monitor="val_loss", save_top_k=2)
    model = BoringModel()
    trainer = pl.Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=2, callbacks=[callback],
                         logger=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model)
    assert len(os.listdir(tmp_path / "ck")) == 2
    trainer = pl.Trainer(max_epochs=4, limit_train_batches=2, limit_val_batches=2, callbacks=[callback],
                         logger=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    best_step = torch.load(storage.local_path(callback.best_model_path), weights_only=True)["global_step"]
    trainer.fit(BoringModel(), ckpt_path="best")
    assert trainer.global_step == best_step + (4 - (best_step // 2)) * 2


def test_hyperparameters_that_are_not_plain_data_are_left_out_with_a_warning(tmp_path):
    class WithObject(BoringModel):
        def __init__(self, size=32, activation=None):
            super().__init__(size=size)
            self.save_hyperparameters()

    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(WithObject(activation=torch.nn.ReLU()))
    with pytest.warns(UserWarning, match=r"\['activation \(ReLU\)'\] are not plain data"):
        trainer.save_checkpoint(tmp_path / "x.ckpt")
    loaded = WithObject.load_from_checkpoint(tmp_path / "x.ckpt", activation=torch.nn.Tanh())
    assert isinstance(loaded.hparams.activation, torch.nn.Tanh)


# ---------------------------------------------------------------------- bad input
def test_corrupt_and_truncated_checkpoints_name_the_file(tmp_path):
    _, trainer = trained(tmp_path)
    good = tmp_path / "good.ckpt"
    trainer.save_checkpoint(good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    for bad in (truncated, garbage):
        with pytest.raises(CheckpointError, match=f"{bad}.*corrupt or truncated"):
            load_checkpoint_file(str(bad))
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            HModel.load_from_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint_file(str(tmp_path / "missing.ckpt"))


def test_foreign_files_are_refused_safely(tmp_path):
    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a lightray/Lightning checkpoint.*weights_only=True"):
        load_checkpoint_file(str(foreign))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Evil()}, evil)
    with pytest.raises(CheckpointError, match="a safe load refuses"):
        load_checkpoint_file(str(evil))
    assert not (tmp_path / "pwned").exists()
    with open(tmp_path / "pickled.ckpt", "wb") as f:
        pickle.dump({"state_dict": {}}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint_file(str(tmp_path / "pickled.ckpt"))


def test_checkpoint_of_another_model_lists_missing_and_unexpected_keys(tmp_path):
    _, trainer = trained(tmp_path)
    trainer.save_checkpoint(tmp_path / "boring.ckpt")

    class Other(pl.LightningModule):
        def __init__(self, **kwargs):
            super().__init__()
            self.encoder = torch.nn.Linear(32, 2)

    with pytest.raises(CheckpointError) as err:
        Other.load_from_checkpoint(tmp_path / "boring.ckpt")
    message = str(err.value)
    assert "missing keys ['encoder.weight', 'encoder.bias']" in message
    assert "unexpected keys ['layer.weight', 'layer.bias']" in message


def test_ckpt_path_best_without_model_checkpoint(tmp_path):
    trainer = pl.Trainer(max_steps=1, enable_checkpointing=False, logger=False, enable_progress_bar=False)
    with pytest.raises(pl.MisconfigurationError, match='ckpt_path="best"` needs a `ModelCheckpoint'):
        trainer.fit(BoringModel(), ckpt_path="best")


def test_ckpt_path_last_without_checkpoints_starts_fresh(tmp_path):
    trainer = pl.Trainer(max_steps=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    with pytest.warns(UserWarning, match="found no checkpoint"):
        trainer.fit(BoringModel(), ckpt_path="last")
    assert trainer.global_step == 2


def test_unwritable_dirpath_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    trainer = pl.Trainer(max_epochs=1, callbacks=[ModelCheckpoint(dirpath=blocker / "ckpts")], logger=False,
                         enable_progress_bar=False)  # fmt: skip
    model = BoringModel()
    with pytest.raises(PermissionError, match="Cannot write checkpoints to .*a_file/ckpts.*writable `dirpath`"):
        trainer.fit(model)
    assert trainer.global_step == 0


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _, trainer = trained(tmp_path)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    before = path.read_bytes()

    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        os.truncate(f, os.path.getsize(f) // 2)  # the disk filled up halfway through the write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    full = r"Saving the checkpoint to .*model.ckpt.*no space left on device at .*unchanged"
    with pytest.raises(CheckpointError, match=full):
        trainer.save_checkpoint(path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    HModel.load_from_checkpoint(path)


def test_monitor_never_logged_lists_logged_metrics(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="val_acc")
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, callbacks=[callback],
                         logger=False, enable_progress_bar=False)  # fmt: skip
    with pytest.raises(pl.MisconfigurationError, match=r"monitor='val_acc'.*\['train_loss', 'val_loss'\]"):
        trainer.fit(BoringModel())


def test_on_exception_checkpoint(tmp_path):
    class Crash(BoringModel):
        def training_step(self, batch, batch_idx):
            if self.global_step == 3:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    trainer = pl.Trainer(max_epochs=1, callbacks=[OnExceptionCheckpoint(tmp_path)], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Crash())
    assert torch.load(tmp_path / "on_exception.ckpt", weights_only=True)["global_step"] == 3


# ---------------------------------------------------------------------- Lightning interop
lightning = pytest.importorskip("pytorch_lightning", reason="interop tests need the dev extra")


def _module_class(framework):
    class Lit(framework.LightningModule):
        def __init__(self, hidden: int = 4, lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.Linear(hidden, 1))

        def training_step(self, batch, batch_idx):
            return self.net(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

        def train_dataloader(self):
            data = torch.utils.data.TensorDataset(torch.randn(8, 3))
            return torch.utils.data.DataLoader(data, batch_size=4)

    return Lit


def _fit(framework, tmp_path):
    model = _module_class(framework)(hidden=5, lr=0.05)
    trainer = framework.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                                enable_model_summary=False)  # fmt: skip
    trainer.fit(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return model, path


def test_lightray_checkpoint_loads_under_lightning(tmp_path):
    ours, path = _fit(pl, tmp_path)
    theirs = _module_class(lightning).load_from_checkpoint(path)
    assert theirs.hparams == {"hidden": 5, "lr": 0.05}
    for key, value in ours.state_dict().items():
        assert torch.equal(theirs.state_dict()[key], value)
    assert set(torch.load(path, weights_only=True)) >= LIGHTNING_KEYS


def test_lightning_checkpoint_loads_into_lightray(tmp_path):
    theirs, path = _fit(lightning, tmp_path)
    ours = _module_class(pl).load_from_checkpoint(path)
    assert ours.hparams == {"hidden": 5, "lr": 0.05}
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value)


def test_failed_background_commit_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from lightray import storage as storage_module

    real_commit = storage_module._commit
    calls = []

    def flaky_commit(tmp, target, folder):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real_commit(tmp, target, folder)

    monkeypatch.setattr(storage_module, "_commit", flaky_commit)
    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=1)
    trainer = pl.Trainer(max_steps=3, callbacks=[callback], logger=False, enable_progress_bar=False)
    with pytest.raises(OSError, match="Input/output error"):
        trainer.fit(BoringModel())
    assert os.path.exists(tmp_path / "epoch=0-step=1.ckpt")  # its removal was queued behind the failed write
    assert not os.path.exists(tmp_path / "epoch=0-step=2.ckpt")
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    HModel.load_from_checkpoint(tmp_path / "epoch=0-step=1.ckpt", strict=False)


def test_ckpt_path_last_sets_a_damaged_checkpoint_aside_and_resumes_from_the_one_before(tmp_path):
    def run(max_steps, ckpt_path=None):
        callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, save_last=True)
        trainer = pl.Trainer(max_steps=max_steps, callbacks=[callback], logger=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0)  # fmt: skip
        trainer.fit(BoringModel(), ckpt_path=ckpt_path)
        return trainer

    run(6)
    last = tmp_path / "last.ckpt"
    os.truncate(last, last.stat().st_size // 3)  # a damaged newest checkpoint
    with pytest.warns(UserWarning, match=r"last.ckpt.*corrupt or truncated.*moved to .*last.ckpt.damaged"):
        trainer = run(8, ckpt_path="last")
    assert trainer.global_step == 8 and (tmp_path / "last.ckpt.damaged").exists()

    os.remove(tmp_path / "last.ckpt")  # a kill hit the first write of last.ckpt: the step checkpoints remain
    loaded = torch.load(tmp_path / "epoch=0-step=8.ckpt", weights_only=True)
    assert loaded["global_step"] == 8
    trainer = run(10, ckpt_path="last")
    assert trainer.global_step == 10  # resumed at step 8, not from scratch

    for path in tmp_path.glob("*.ckpt"):
        path.write_bytes(b"not a checkpoint")
    no_usable = r"No usable checkpoint for `ckpt_path=\"last\"`.*\n  - .*ckpt: "
    with pytest.raises(CheckpointError, match=no_usable), pytest.warns(UserWarning):
        run(12, ckpt_path="last")


def test_interrupted_saves_leave_no_temporaries_and_files_follow_the_umask(tmp_path):
    _, trainer = trained(tmp_path)
    stale, fresh = tmp_path / ".last.ckpt.abc123.tmp", tmp_path / ".other.ckpt.def456.tmp"
    stale.write_bytes(b"0" * 100)  # what a killed save left behind
    fresh.write_bytes(b"0" * 100)  # a save in progress elsewhere right now
    os.utime(stale, (1, 1))
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert not stale.exists() and fresh.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "model.ckpt").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a real disk that fills up during a save."""
    import subprocess

    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_says_so_and_keeps_the_last_good_checkpoint(small_disk):
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    small = HModel(size=8)
    trainer.fit(small)
    trainer.save_checkpoint(small_disk / "model.ckpt")
    before = (small_disk / "model.ckpt").read_bytes()

    big = HModel(size=8)
    big.extra = torch.nn.Linear(700, 700)  # about 1.9 MB of weights
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.fit(big)
    with pytest.raises(
        CheckpointError, match=r"no space left on device at .*small: the checkpoint needs about 1\.\d MB"
    ):
        trainer.save_checkpoint(small_disk / "model.ckpt")
    assert (small_disk / "model.ckpt").read_bytes() == before
    assert [p.name for p in small_disk.iterdir()] == ["model.ckpt"]  # no temporary left behind


def test_a_replaced_newest_checkpoint_is_refused_and_set_aside(tmp_path):
    """A newest checkpoint swapped for a pickle that would run code on load: never executed, set aside, and the
    run resumes from the checkpoint before it."""
    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, save_last=True)
    pl.Trainer(max_steps=4, callbacks=[callback], **QUIET_FIT).fit(BoringModel())
    torch.save({"state_dict": {}, "payload": os.system}, tmp_path / "last.ckpt")  # code, not data
    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, save_last=True)
    trainer = pl.Trainer(max_steps=6, callbacks=[callback], **QUIET_FIT)
    with pytest.warns(UserWarning, match=r"last.ckpt.*holds objects that a safe load refuses.*moved to .*damaged"):
        trainer.fit(BoringModel(), ckpt_path="last")
    assert trainer.global_step == 6 and (tmp_path / "last.ckpt.damaged").exists()

"""The same Trainer on Ray Train workers: DDP on a real local Ray cluster, fault tolerance, resume."""

from __future__ import annotations

import os

import pytest
import torch
from ray_helpers import KillAt, KillOnce, RaiseOnce, Regression, UnusedBranch

import lightray as pl
from lightray.checkpoint import load_checkpoint_file

ray = pytest.importorskip("ray")
pytest.importorskip("ray.train")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def fit(tmp_path, name, model=None, callbacks=(), max_epochs=2, **kwargs):
    model = model or Regression()
    trainer = pl.Trainer(max_epochs=max_epochs, num_workers=2, storage_path=str(tmp_path / "runs"), name=name,
                         default_root_dir=tmp_path, callbacks=list(callbacks), **QUIET, **kwargs)  # fmt: skip
    trainer.fit(model)
    return model, trainer


def test_ddp_options_sync_batchnorm_and_the_users_sampler_on_the_workers(tmp_path):
    # a parameter that no step uses: DDP fails at the second step unless find_unused_parameters=True reaches it;
    # use_distributed_sampler=False keeps the user's sampler, so each rank reads all 64 rows (16 batches of 4)
    # instead of its half. (sync_batchnorm needs CUDA workers: on CPU workers it is refused before Ray starts.)
    record = tmp_path / "ddp.txt"
    strategy = pl.strategies.DDPStrategy(find_unused_parameters=True)
    _, trainer = fit(tmp_path, "unused", model=UnusedBranch(str(record)), max_epochs=1, strategy=strategy,
                     use_distributed_sampler=False)  # fmt: skip
    assert record.read_text() == "DistributedDataParallel find_unused_parameters=True BatchNorm1d batches=16"
    assert trainer.global_step == 16
    with pytest.raises(pl.MisconfigurationError, match=r"sync_batchnorm=True on CPU workers: .* CUDA devices only"):
        pl.Trainer(num_workers=2, sync_batchnorm=True)


def test_two_worker_ddp_fit(tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    initial = Regression()
    before = {k: v.clone() for k, v in initial.state_dict().items()}
    model, trainer = fit(tmp_path, "ddp", model=Regression(record_dir=str(record)))

    # each rank trained on its own half of the data every epoch, with a new shuffle per epoch
    seen = {rank: (record / f"rank{rank}.txt").read_text().splitlines() for rank in (0, 1)}
    assert trainer.global_step == 2 * 64 // (4 * 2)  # 8 steps per epoch per rank
    for epoch in range(2):
        epoch_ids = [set(), set()]
        for rank in (0, 1):
            for line in seen[rank][epoch * 8 : (epoch + 1) * 8]:
                epoch_ids[rank].update(int(i) for i in line.split()[:-1])
        assert epoch_ids[0].isdisjoint(epoch_ids[1]) and len(epoch_ids[0] | epoch_ids[1]) == 64

    # the driver's module holds the trained weights, which are those of the last checkpoint
    assert not torch.equal(model.net[0].weight, before["net.0.weight"])
    path = trainer.checkpoint_callback.best_model_path
    assert path.startswith(str(tmp_path / "runs" / "ddp")) and os.path.isdir(path)
    saved = load_checkpoint_file(path)
    for key, value in model.state_dict().items():
        assert torch.equal(saved["state_dict"][key], value)
    assert Regression.load_from_checkpoint(path).net[0].weight.shape == (16, 4)

    # sync_dist reduced across ranks; metrics and their history came back to the driver
    assert float(trainer.callback_metrics["rank_mean"]) == pytest.approx(0.5)
    assert {"train_loss", "val_loss", "rank_mean"} <= set(trainer.callback_metrics)
    assert trainer.current_epoch == 2
    assert [row["epoch"] for row in trainer.logged_metrics_history if "val_loss" in row] == [0.0, 1.0]


def test_user_exception_reaches_the_driver(tmp_path):
    with pytest.raises(ValueError, match="bad batch on rank 1") as raised:
        fit(tmp_path, "fails", model=Regression(fail_on_rank=1))
    notes = "\n".join(raised.value.__notes__)
    # shown once: the worker's own frames down to the user's line, and where every rank's output is
    assert notes.count("Traceback on Ray Train worker rank 1") == 1 and "in training_step" in notes
    assert raised.value.__cause__ is None and str(tmp_path / "runs" / "fails" / "worker_logs") in notes


def test_sigkilled_worker_resumes_to_identical_weights(tmp_path):
    pl.seed_everything(1)
    checkpoints = pl.callbacks.ModelCheckpoint(every_n_train_steps=3, save_top_k=-1)
    reference, _ = fit(tmp_path, "reference", callbacks=[checkpoints])
    pl.seed_everything(1)
    marker = str(tmp_path / "killed")
    resumed, trainer = fit(
        tmp_path,
        "killed",
        callbacks=[pl.callbacks.ModelCheckpoint(every_n_train_steps=3, save_top_k=-1), KillOnce(marker, step=5)],
        max_failures=1,
    )
    assert os.path.exists(marker)  # the worker really was killed
    assert trainer.global_step == 16
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_rerunning_the_script_resumes_the_run(tmp_path):
    pl.seed_everything(2)
    marker = str(tmp_path / "interrupted")
    callbacks = [pl.callbacks.ModelCheckpoint(every_n_train_steps=4, save_top_k=-1), RaiseOnce(marker, step=6)]
    with pytest.raises(RuntimeError, match="interrupted on purpose"):
        fit(tmp_path, "rerun", callbacks=callbacks)
    pl.seed_everything(2)
    record = tmp_path / "record"
    record.mkdir()
    model, trainer = fit(tmp_path, "rerun", model=Regression(record_dir=str(record)), callbacks=callbacks)
    first_step = int((record / "rank0.txt").read_text().splitlines()[0].split("step=")[1])
    assert first_step == 4  # continued from the checkpoint at step 4, not from scratch
    assert trainer.global_step == 16


def test_workers_that_can_never_fit_fail_fast(tmp_path):
    trainer = pl.Trainer(max_epochs=1, num_workers=3, resources_per_worker={"CPU": 1}, storage_path=str(tmp_path),
                         **QUIET)  # fmt: skip
    with pytest.raises(pl.MisconfigurationError, match=r"3 workers x 1 CPU = 3, cluster has 2"):
        trainer.fit(Regression())


def test_unpicklable_module_gets_a_clear_error(tmp_path):
    import threading

    model = Regression()
    model.lock = threading.Lock()
    trainer = pl.Trainer(max_epochs=1, num_workers=2, storage_path=str(tmp_path), **QUIET)
    with pytest.raises(pl.MisconfigurationError, match="cannot be sent to the Ray workers.*picklable"):
        trainer.fit(model)


def test_devices_map_to_workers():
    with pytest.warns(UserWarning, match="one Ray Train worker per device.*num_workers=4"):
        trainer = pl.Trainer(accelerator="cpu", devices=2, num_nodes=2, **QUIET)
    assert trainer.on_ray and trainer.ray_options.num_workers == 4


def test_validate_and_predict_on_workers(tmp_path):
    model = Regression()
    trainer = pl.Trainer(num_workers=2, storage_path=str(tmp_path / "runs"), name="eval", **QUIET)
    results = trainer.validate(model, verbose=False)
    twin = Regression()
    twin.load_state_dict(model.state_dict())
    local = pl.Trainer(**QUIET).validate(twin, verbose=False)
    # validation data split over two ranks, reduced with sync_dist: the same mean as one process
    assert results[0]["val_loss"] == pytest.approx(local[0]["val_loss"], rel=1e-5)


def test_unregistered_checkpoints_are_set_aside(tmp_path):
    from lightray.ray_backend.worker import _set_aside_unregistered

    for step in (4, 8):
        folder = tmp_path / f"epoch=0-step={step}.ckpt"
        folder.mkdir()
        torch.save({"global_step": step, "state_dict": {}}, folder / "checkpoint.ckpt")
    with pytest.warns(UserWarning, match=r"step=8.ckpt \(global step 8\) was written after .* \(step 4\)"):
        _set_aside_unregistered(str(tmp_path), restored_step=4)
    assert sorted(os.listdir(tmp_path)) == ["epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt.unregistered"]


def test_rays_own_config_classes_are_accepted(tmp_path):
    scaling = ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5})
    run = ray.train.RunConfig(name="own-configs", storage_path=str(tmp_path / "runs"))
    trainer = pl.Trainer(max_epochs=1, scaling_config=scaling, run_config=run, **QUIET)
    trainer.fit(Regression())
    assert trainer.global_step == 64 // (4 * 2)
    assert trainer.checkpoint_callback.best_model_path.startswith(str(tmp_path / "runs" / "own-configs"))


def test_a_damaged_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(tmp_path):
    from lightray.callbacks import ModelCheckpoint

    keep_all = [ModelCheckpoint(save_top_k=-1)]
    _, trainer = fit(tmp_path, "damaged", callbacks=keep_all)
    run_dir = tmp_path / "runs" / "damaged"
    newest = max(run_dir.glob("*.ckpt"), key=lambda p: load_checkpoint_file(str(p))["global_step"])
    assert newest.name == "epoch=1-step=16.ckpt"
    checkpoint = newest / "checkpoint.ckpt"
    os.truncate(checkpoint, checkpoint.stat().st_size // 3)

    _, trainer = fit(tmp_path, "damaged", callbacks=keep_all, max_epochs=3)  # a rerun resumes the run
    assert trainer.global_step == 3 * 8  # epochs 1 and 2 trained again after the epoch-0 checkpoint
    assert (run_dir / "epoch=1-step=16.ckpt.damaged").is_dir()  # set aside (the warning is in the worker's log)
    assert load_checkpoint_file(str(run_dir / "epoch=2-step=24.ckpt"))["global_step"] == 24


def test_a_dead_worker_with_no_retry_left_is_named(tmp_path):
    from lightray.ray_backend.launcher import WorkerDiedError

    marker = str(tmp_path / "killed")
    with pytest.raises(WorkerDiedError, match=r"worker rank 1 died: .*SIGKILL.*max_failures=0 is spent \(1 attempt\)"):
        fit(tmp_path, "no-retry", callbacks=[KillOnce(marker, step=3)])
    assert os.path.exists(marker)


def test_a_damaged_ray_run_state_is_named_and_the_run_resumes_from_its_checkpoints(tmp_path):
    from lightray.callbacks import ModelCheckpoint

    fit(tmp_path, "state", callbacks=[ModelCheckpoint(save_top_k=-1)])
    snapshot = tmp_path / "runs" / "state" / "checkpoint_manager_snapshot.json"
    snapshot.write_text(snapshot.read_text()[:20])  # truncated
    with pytest.warns(UserWarning, match=r"checkpoint_manager_snapshot.json is damaged .* resumes from its newest"):
        _, trainer = fit(tmp_path, "state", callbacks=[ModelCheckpoint(save_top_k=-1)], max_epochs=3)
    assert trainer.global_step == 3 * 8 and (snapshot.parent / "checkpoint_manager_snapshot.json.damaged").exists()


def test_a_run_waiting_for_resources_says_what_it_waits_for(tmp_path, capfd, monkeypatch):
    """While the workers cannot be placed (another actor holds the CPUs), the driver says so until they start."""
    import threading

    from lightray.ray_backend import watchdog

    monkeypatch.setattr(watchdog, "INTERVAL_S", 1.0)
    monkeypatch.setattr(watchdog.Watchdog.__init__, "__defaults__", (1.0, None))

    @ray.remote(num_cpus=1.5)
    class Hog:
        def ready(self) -> bool:
            return True

    hog = Hog.remote()
    ray.get(hog.ready.remote())
    threading.Timer(12.0, lambda: ray.kill(hog)).start()  # the CPUs come free after a while
    _, trainer = fit(tmp_path, "waiting", max_epochs=1)
    assert trainer.global_step == 8
    err = capfd.readouterr().err
    assert "lightray: the Ray Train workers have not started after" in err
    assert "placement group(s) wait for resources" in err


def test_workers_killed_at_random_steps_several_times_end_with_the_uninterrupted_weights(tmp_path):
    import random

    rng = random.Random()
    kills = sorted((rng.randint(2, 14), rng.randint(0, 1)) for _ in range(2))
    if kills[0][0] == kills[1][0]:
        kills[1] = (kills[0][0] + 1, kills[1][1])
    every3 = dict(every_n_train_steps=3, save_top_k=-1)
    pl.seed_everything(1)
    reference, _ = fit(tmp_path, "uninterrupted", callbacks=[pl.callbacks.ModelCheckpoint(**every3)])
    pl.seed_everything(1)
    callbacks = [pl.callbacks.ModelCheckpoint(**every3), KillAt(str(tmp_path), kills)]
    resumed, trainer = fit(tmp_path, "killed-twice", callbacks=callbacks, max_failures=2)
    assert sorted(p.name for p in tmp_path.glob("killed-*")) == sorted(f"killed-{s}-{r}" for s, r in kills), kills
    assert trainer.global_step == 16, kills
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), (key, kills)


def test_what_a_person_sees_on_two_workers(tmp_path):
    """A 2-worker run in a terminal: a live bar, rank 0's own lines above it, no Ray chatter, nothing after the
    result; every rank's output in its log file."""
    import re
    import shlex
    import sys

    from test_display import screen_of

    program = os.path.join(os.path.dirname(__file__), "display_program.py")
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    command = " ".join(shlex.quote(part) for part in (sys.executable, program, str(tmp_path / "run"), "2"))
    screen = screen_of(command, tmp_path, env)

    updates = [i for i, line in enumerate(screen) if re.match(r"Epoch \d+:\s+\d+%", line)]
    for epoch in (0, 1):
        positions = {re.search(r"(\d+)/24", line).group(1) for line in screen if line.startswith(f"Epoch {epoch}:")}
        assert len(positions) >= 5, (epoch, positions)  # a live bar, not 0% then 100%
    between = screen[updates[0] : updates[-1]]
    ray_lines = [line for line in between if re.search(r"\(pid=|\w+ pid=\d+\)|core_worker|raylet|gcs_|\bINFO\b", line)]
    assert not ray_lines, ray_lines
    assert screen[-1].startswith("RESULT "), screen[-8:]  # nothing after the result
    assert "hello from rank 0" in screen and "hello from rank 1" not in screen
    assert any("a warning from rank 0" in line for line in screen)
    assert "`Trainer.fit` stopped: `max_epochs=2` reached." in screen
    assert any(line.startswith("lightray: fit finished at epoch 2, step 48") for line in screen)
    folder = next(line.split(None, 2)[2] for line in screen if line.startswith("worker logs"))
    with open(os.path.join(folder, "rank_1.log")) as rank1, open(os.path.join(folder, "rank_0.log")) as rank0:
        assert "hello from rank 1" in rank1.read() and "a warning from rank 0" in rank0.read()
    assert screen[0].startswith("lightray: connecting to the Ray cluster")


def test_lr_finder_several_loaders_and_the_rich_bar_on_two_workers(tmp_path):
    import io
    import re

    from ray_helpers import TwoSources

    screen = io.StringIO()
    bar = pl.callbacks.RichProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 120})
    finder = pl.callbacks.LearningRateFinder(num_training_steps=14, early_stop_threshold=None)  # over 2 epochs
    trainer = pl.Trainer(max_epochs=2, num_workers=2, storage_path=str(tmp_path / "runs"), name="surface",
                         default_root_dir=tmp_path, callbacks=[finder, bar], logger=False,
                         enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(TwoSources())
    metrics = trainer.callback_metrics
    assert float(metrics["lr_spread"]) == 0.0  # every rank trains with rank 0's suggestion
    assert float(metrics["lr_used"]) != 0.05  # the suggestion replaced the module's rate
    # the dict of loaders: each rank reads its half of the longest loader (64 rows / 4 / 2 = 8 steps an epoch)
    assert trainer.global_step == 16
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "Epoch 0" in drawn and "8/8" in drawn  # rank 0's progress, drawn by the rich bar on the driver

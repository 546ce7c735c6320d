"""Hyperparameter searches with Ray Tune on a real 2-CPU Ray cluster: ASHA, PBT, distributed trials, restore."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
from tune_helpers import STEPS_PER_EPOCH, Tiny, read_records, train_fn, train_on, tune_cluster

import lightray
import lightray.tune
from lightray.errors import MisconfigurationError

ray = pytest.importorskip("ray")
tune = pytest.importorskip("ray.tune")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    import tune_helpers

    with tune_cluster():
        # a user's script ships its own functions with the trials (cloudpickle sends __main__ by value) and finds its
        # modules beside it; pytest's tests folder is not on the trial processes' path, so send the helpers along
        ray.cloudpickle.register_pickle_by_value(tune_helpers)
        yield
        ray.cloudpickle.unregister_pickle_by_value(tune_helpers)


def plain_search(tmp_path, name, param_space, scheduler=None, trainable=train_fn, trial_cpus=1.0, **run_options):
    """A search the way Ray documents it: ``ray.tune.Tuner`` over a function trainable with the trial's resources."""
    record = tmp_path / "record"
    record.mkdir(exist_ok=True)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": trial_cpus}),
        param_space={"record_dir": str(record), **param_space},
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=scheduler, max_concurrent_trials=2),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path / "results"), verbose=0, **run_options),
    )
    return tuner.fit(), str(record)


def search(tmp_path, name, param_space, scheduler=None, num_workers=0, **tune_kwargs):
    """The same through lightray's shortcut, which also counts each trial's Ray Train workers."""
    record = tmp_path / "record"
    record.mkdir(exist_ok=True)
    tuner = lightray.tune.tuner(
        train_fn,
        param_space={"record_dir": str(record), "num_workers": num_workers, **param_space},
        tune_config=tune.TuneConfig(
            metric="val_loss", mode="min", scheduler=scheduler, reuse_actors=not num_workers, **tune_kwargs
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path / "results"), verbose=0),
        num_workers=num_workers,
        resources_per_worker={"CPU": 0.4} if num_workers else None,
    )
    return tuner.fit(), str(record)


def reported_epochs(result) -> list[int]:
    return [int(e) for e in result.metrics_dataframe["epoch"]]


def validated_epochs(record: str, result) -> list[int]:
    return [row["epoch"] for row in read_records(record, result.metrics["trial_id"]) if row["event"] == "val"]


def test_a_plain_tuner_with_asha_stops_the_weak_trials_and_finds_the_best_lr(tmp_path):
    # eight trials, two at a time: four that learn first, then four that never do (lr=0); ASHA stops each of those
    # at its first report (rung 1). Plain SGD on a linear regression: the largest lr is the best at every epoch
    asha = tune.schedulers.ASHAScheduler(max_t=4, grace_period=1, reduction_factor=2)
    grid = [0.2, 0.1, 0.05, 0.02, 0.0, 0.0, 0.0, 0.0]
    results, record = plain_search(tmp_path, "asha", {"lr": tune.grid_search(grid), "momentum": 0.0}, asha)
    assert not results.errors and len(results) == 8
    iterations = {}
    for result in results:
        iterations.setdefault(result.config["lr"], []).append(len(result.metrics_dataframe))
        # one Tune iteration per validation epoch, in order, each with a checkpoint
        assert reported_epochs(result) == validated_epochs(record, result) == list(range(len(reported_epochs(result))))
        assert list(result.metrics_dataframe["training_iteration"]) == [e + 1 for e in reported_epochs(result)]
        assert result.checkpoint is not None
    assert iterations[0.0] == [1, 1, 1, 1]  # stopped early
    assert iterations[0.2] == [4]
    best = results.get_best_result()
    assert best.config["lr"] == 0.2 and best.metrics["epoch"] == 3
    model = lightray.tune.load_best(results, Tiny)
    saved = torch.load(lightray.tune.checkpoint_path(best), weights_only=True)
    assert model.hparams.lr == 0.2 and saved["global_step"] == 4 * STEPS_PER_EPOCH
    assert torch.equal(model.net.weight, saved["state_dict"]["net.weight"])


def test_a_plain_tuner_with_parameters_passes_a_dataset_to_each_trial(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 8, generator=g)
    data = (x, x @ torch.randn(8, 1, generator=g))
    trainable = tune.with_parameters(train_on, data=data)
    results, record = plain_search(tmp_path, "params", {"lr": tune.grid_search([0.05, 0.0]), "max_epochs": 2},
                                   trainable=trainable, trial_cpus=0.5)  # fmt: skip
    assert not results.errors
    for result in results:
        rows = read_records(record, result.metrics["trial_id"])
        assert rows[0] == {"event": "data", "samples": 48}  # the dataset from the object store, not the module's own
        assert reported_epochs(result) == [0, 1]
        saved = torch.load(lightray.tune.checkpoint_path(result), weights_only=True)
        assert saved["global_step"] == 2 * 3  # 48 samples in batches of 16
    assert results.get_best_result().config["lr"] == 0.05


def test_a_plain_tuner_trial_can_drive_two_ray_train_workers(tmp_path):
    # the trial holds a small CPU share and its Ray Train run asks for its own workers, as Ray documents it:
    # 2 trials x (0.1 + 2 x 0.4) CPUs fit the 2-CPU cluster at once
    results, record = plain_search(tmp_path, "ddp", {"lr": tune.grid_search([0.05, 0.0]), "max_epochs": 2,
                                                     "num_workers": 2}, trial_cpus=0.1)  # fmt: skip
    assert not results.errors
    for result in results:
        assert reported_epochs(result) == validated_epochs(record, result) == [0, 1]
        assert result.metrics["rank"] == pytest.approx(0.5)  # averaged over the two ranks
        saved = torch.load(lightray.tune.checkpoint_path(result), weights_only=True)
        assert saved["global_step"] == 2 * STEPS_PER_EPOCH
    assert results.get_best_result().config["lr"] == 0.05


def test_distributed_trials_of_the_shortcut_complete_and_stopped_ones_free_their_workers(tmp_path):
    # 2 workers x 0.4 CPU + 0.1 for the trial: two trials at a time; the third (lr=0) starts when one ends, and
    # ASHA stops it after one epoch
    asha = tune.schedulers.ASHAScheduler(max_t=2, grace_period=1, reduction_factor=2)
    results, record = search(
        tmp_path, "ddp", {"lr": tune.grid_search([0.05, 0.05, 0.0]), "max_epochs": 2}, asha, num_workers=2
    )
    assert not results.errors
    assert sorted((r.config["lr"], len(r.metrics_dataframe)) for r in results) == [(0.0, 1), (0.05, 2), (0.05, 2)]
    for result in results:
        # Ray Train got two reports per saved checkpoint; Tune got one per validation epoch
        assert reported_epochs(result) == validated_epochs(record, result)
        assert result.metrics["rank"] == pytest.approx(0.5)  # averaged over the two ranks
        assert result.checkpoint is not None
    # the stopped trial's workers are gone: all CPUs are free again (Ray's cleanup actor polls for that)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(2)


def test_pbt_through_a_plain_tuner_exploits_a_checkpoint_with_the_mutated_lr(tmp_path):
    pbt = tune.schedulers.PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=1,
        hyperparam_mutations={"lr": [0.03]},  # an exploiting trial always explores to lr=0.03
        quantile_fraction=0.5,
        resample_probability=0.0,
        synch=True,
    )
    results, record = plain_search(tmp_path, "pbt", {"lr": tune.grid_search([0.05, 0.0]), "max_epochs": 3}, pbt)
    assert not results.errors
    starts = {r.path: [row for row in read_records(record, r.metrics["trial_id"]) if row["event"] == "start"]
              for r in results}  # fmt: skip
    restarts = [row for rows in starts.values() for row in rows if row["restored_step"] is not None]
    assert restarts, starts
    for row in restarts:
        # the loop resumed at the checkpoint's step, with the lr of the trial's (possibly mutated) config
        assert row["step"] == row["restored_step"] > 0 and row["step"] % STEPS_PER_EPOCH == 0
        assert row["lr"] == row["config_lr"]
    # the weak trial exploited the strong one's checkpoint with a mutated lr, and trains with the new one
    assert any(row["checkpoint_lr"] == 0.05 and row["lr"] == row["config_lr"] == 0.03 for row in restarts), restarts
    for result in results:
        assert result.metrics["epoch"] == 2 and len(result.metrics_dataframe) >= 1


def test_an_interrupted_plain_search_resumes_with_tuner_restore(tmp_path):
    marker = str(tmp_path / "failed")
    results, record = plain_search(tmp_path, "restore", {"lr": 0.05, "fail_marker": marker})
    assert len(results.errors) == 1 and "interrupted on purpose" in str(results.errors[0])
    path = str(tmp_path / "results" / "restore")
    assert tune.Tuner.can_restore(path)
    trainable = tune.with_resources(train_fn, {"cpu": 1})
    restored = tune.Tuner.restore(path, trainable=trainable, resume_errored=True).fit()
    assert not restored.errors
    result = restored[0]
    second_start = [row for row in read_records(record, result.metrics["trial_id"]) if row["event"] == "start"][1]
    assert second_start["step"] == second_start["restored_step"] == 2 * STEPS_PER_EPOCH
    assert reported_epochs(result) == [0, 1, 2, 3]  # the restored trial went on where it stopped, no repeats


def test_a_failed_trial_that_tune_retries_resumes_from_its_last_report(tmp_path):
    marker = str(tmp_path / "failed")
    failures = tune.FailureConfig(max_failures=1)
    results, record = plain_search(tmp_path, "retry", {"lr": 0.05, "fail_marker": marker}, failure_config=failures)
    assert not results.errors
    result = results[0]
    starts = [row for row in read_records(record, result.metrics["trial_id"]) if row["event"] == "start"]
    assert [row["step"] for row in starts] == [0, 2 * STEPS_PER_EPOCH]
    assert starts[1]["restored_step"] == 2 * STEPS_PER_EPOCH
    assert reported_epochs(result) == [0, 1, 2, 3]


def test_a_metric_never_logged_fails_the_trial_naming_the_logged_ones(tmp_path):
    results, _ = search(tmp_path, "typo", {"lr": 0.05, "max_epochs": 1, "metrics": ["val_los"]})
    assert len(results.errors) == 1
    message = str(results.errors[0])
    assert "['val_los']" in message and "['rank', 'train_loss', 'val_loss']" in message


def test_a_trainer_asking_for_other_workers_than_the_trial_fails_the_trial_at_once(tmp_path):
    # tuner(num_workers=0) counts 1 CPU per trial; the trial's Trainer asks for 2 Ray Train workers Tune never counted
    start = time.monotonic()
    results, _ = search(tmp_path, "mismatch", {"lr": 0.05, "max_epochs": 1, "num_workers": 2})
    assert len(results.errors) == 1 and time.monotonic() - start < 60
    message = str(results.errors[0])
    assert "was given no Ray Train workers (it trains in its own process)" in message
    assert "its Trainer asks for 2 workers x {'CPU': 0.4}" in message and "pass the same num_workers" in message


def test_a_trials_trainer_must_match_the_trials_workers_and_inherits_their_resources(monkeypatch):
    from lightray.tune import trial

    monkeypatch.setattr(trial, "_current", trial.Trial(None, lightray.tune.trial_resources(2, {"CPU": 0.4})))
    inherits = lightray.Trainer(num_workers=2)  # no resources_per_worker: the trial's, not an automatic share
    matched = trial.match_workers(inherits.ray_options)
    assert matched.resources_per_worker == {"CPU": 0.4}
    assert inherits.ray_options.resources_per_worker is None  # a new value; the Trainer's own is never changed
    same = lightray.Trainer(num_workers=2, resources_per_worker={"CPU": 0.4}).ray_options
    assert trial.match_workers(same) is same  # the same: fine
    for other, wants in [({"num_workers": 1}, "1 worker. Tune"),
                         ({"num_workers": 2, "resources_per_worker": {"CPU": 1}}, "2 workers x {'CPU': 1.0}"),
                         ({"num_workers": 2, "use_gpu": True}, "2 workers x {'CPU': 0.0, 'GPU': 1.0}"),  # no GPU
                         ({}, "no workers (num_workers=0")]:  # fmt: skip
        with pytest.raises(MisconfigurationError, match=r"was given 2 Ray Train workers x \{'CPU': 0.4\}") as info:
            trial.match_workers(lightray.Trainer(**other).ray_options)
        assert f"its Trainer asks for {wants}" in str(info.value)
    monkeypatch.setattr(trial, "_current", None)  # outside a trial nothing is checked
    unchecked = lightray.Trainer(num_workers=3).ray_options
    assert trial.match_workers(unchecked) is unchecked


def test_trials_that_can_never_fit_fail_at_once():
    with pytest.raises(MisconfigurationError, match=r"one trial needs 3.1 CPU, the cluster has 2"):
        lightray.tune.tuner(train_fn, num_workers=3, resources_per_worker={"CPU": 1})
    with pytest.raises(MisconfigurationError, match=r"no node has the trial's own bundle"):
        lightray.tune.tuner(train_fn, cpus_per_trial=4)


def test_concurrency_is_bounded_by_the_cluster():
    resources = lightray.tune.trial_resources(num_workers=2, resources_per_worker={"CPU": 0.4})
    assert resources.total() == {"CPU": pytest.approx(0.9)}
    assert lightray.tune.bound_concurrency(tune.TuneConfig(), resources).max_concurrent_trials == 2
    assert (
        lightray.tune.bound_concurrency(tune.TuneConfig(max_concurrent_trials=1), resources).max_concurrent_trials == 1
    )
    one_cpu = lightray.tune.trial_resources(cpus_per_trial=1)
    assert lightray.tune.bound_concurrency(tune.TuneConfig(max_concurrent_trials=8), one_cpu).max_concurrent_trials == 2


def run_example(tmp_path, script: str, *args: str) -> dict[str, str]:
    """Run an example as a user would (``python examples/<script> ...``), its Ray driver joining this test cluster;
    returns its ``name: value`` summary lines."""
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), *args, "--storage-path", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line and not line.startswith(" "))


def test_asha_example_smoke(tmp_path):
    summary = run_example(tmp_path, "tune_asha.py", "--num-samples", "2", "--max-epochs", "1")
    assert 0.0 <= float(summary["validation accuracy"]) <= 1.0
    assert summary["search folder"] == str(tmp_path / "results" / "tune-asha")


def test_pbt_example_smoke(tmp_path):
    summary = run_example(tmp_path, "tune_pbt.py", "--num-samples", "2", "--max-epochs", "2",
                          "--perturbation-interval", "1")  # fmt: skip
    assert 0.0 <= float(summary["validation accuracy"]) <= 1.0
    assert summary["search folder"] == str(tmp_path / "results" / "tune-pbt")

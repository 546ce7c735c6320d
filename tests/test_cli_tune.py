"""`lightray tune`: a Ray Tune search from class paths, YAML and a search space, its results, resume, bad input."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
import yaml
from tune_helpers import tune_cluster

from lightray import cli

ray = pytest.importorskip("ray")
tune = pytest.importorskip("ray.tune")

MODEL = ["--model", "cli_models.TinyModel", "--data", "cli_models.TinyData"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def local_cluster():
    with tune_cluster():  # with the dashboard: PBT pauses trials that drive Ray Train runs
        yield


def search_config(tmp_path, **tune_options):
    """A run config with a search_space block; the command line adds to it."""
    config = {
        "trainer": {"max_epochs": 2, "default_root_dir": str(tmp_path)},
        "model": {"class_path": "cli_models.TinyModel"},
        "data": {"class_path": "cli_models.TinyData"},
        "tune": {"metric": "val_loss", "storage_path": str(tmp_path / "searches"), **tune_options},
        "search_space": {"model.init_args.lr": "grid_search([0.1, 0.0])"},
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.ray
@pytest.mark.slow
def test_search_runs_trials_with_the_sampled_values_prints_the_best_and_resumes(tmp_path, capsys, local_cluster):
    argv = ["tune", "--config", search_config(tmp_path, name="lr-bs"), *QUIET, "--tune.num_samples", "2",
            "--tune.scheduler", "asha", "--search_space.data.batch_size", "choice([8, 16])"]  # fmt: skip
    results = cli.run(argv)
    assert isinstance(results, tune.ResultGrid) and len(results) == 4 and not results.errors
    trials = [results[i] for i in range(len(results))]
    assert sorted(r.config["model"]["lr"] for r in trials) == [0.0, 0.0, 0.1, 0.1]  # the grid, twice
    for result in trials:
        lr, batch_size = result.config["model"]["lr"], result.config["data"]["batch_size"]
        assert batch_size in (8, 16)
        # the sampled values reached the module (its saved hyperparameters) and the data module (the trial's config)
        checkpoint = torch.load(os.path.join(result.checkpoint.path, "checkpoint.ckpt"), weights_only=True)
        assert checkpoint["hyper_parameters"]["lr"] == lr
        assert checkpoint["global_step"] == len(result.metrics_dataframe) * 32 // batch_size
        with open(os.path.join(result.path, "lightning_logs", "version_0", "config.yaml")) as f:
            trial_config = yaml.safe_load(f)
        assert trial_config["model"]["init_args"]["lr"] == lr
        assert trial_config["data"]["init_args"]["batch_size"] == batch_size
        assert trial_config["trainer"]["max_epochs"] == 2 and "tune" not in trial_config
    # lr=0 never learns: the best trial has lr=0.1, and the printout names it and says how to load it
    best = results.get_best_result()
    assert best.config["model"]["lr"] == 0.1
    out = capsys.readouterr().out
    assert "4 trials in " in out and len(re.findall(r"^  val_loss=\S+  reports=[12]  model\.lr=", out, re.M)) == 4
    assert f"best trial: {best.metrics['trial_id']}  val_loss={best.metrics['val_loss']:.6g}  model.lr=0.1 " in out
    (load_line,) = re.findall(r"^load it: +(.*)$", out, re.M)
    namespace: dict = {}
    exec(load_line, namespace)  # the printed one-liner loads the best trial's weights
    assert namespace["model"].hparams.lr == 0.1
    best_weights = torch.load(os.path.join(best.checkpoint.path, "checkpoint.ckpt"), weights_only=True)["state_dict"]
    assert torch.equal(namespace["model"].net[0].weight, best_weights["net.0.weight"])

    # the search's folder holds the resolved config, search space included; rerunning it resumes the search
    saved_path = tmp_path / "searches" / "lr-bs" / "config.yaml"
    saved = yaml.safe_load(saved_path.read_text())
    assert saved["search_space"] == {"model.lr": "grid_search([0.1, 0.0])", "data.batch_size": "choice([8, 16])"}
    assert saved["tune"]["scheduler"] == "asha" and saved["model"]["init_args"]["lr"] == 0.1
    resumed = cli.run(["tune", "--config", str(saved_path)])
    assert "resuming the search in" in capsys.readouterr().out
    assert sorted(resumed[i].metrics["trial_id"] for i in range(4)) == sorted(r.metrics["trial_id"] for r in trials)
    # a different search under the same name, or a fresh start forced onto it, is refused
    with pytest.raises(cli.UsageError, match=r"was started with the search space .* start a new search"):
        cli.run(["tune", "--config", str(saved_path), "--search_space.model.lr", "uniform(0.01, 0.1)"])
    with pytest.raises(cli.UsageError, match=r"--tune.resume false: a search already exists at .*lr-bs"):
        cli.run(["tune", "--config", str(saved_path), "--tune.resume", "false"])


@pytest.mark.ray
@pytest.mark.slow
def test_pbt_over_trials_of_two_ray_train_workers_restores_checkpoints_with_the_new_lr(tmp_path, local_cluster):
    record = tmp_path / "starts.jsonl"
    argv = ["tune", "--config", search_config(tmp_path, name="pbt-2w"), *QUIET, "--trainer.num_workers", "2",
            "--trainer.resources_per_worker", "{CPU: 0.4}", "--trainer.callbacks+=cli_models.StartRecord",
            f"--trainer.callbacks.path={record}", "--tune.scheduler", "pbt",
            "--tune.scheduler_args", "{quantile_fraction: 0.5, resample_probability: 0.0, synch: true}"]  # fmt: skip
    results = cli.run(argv)  # lr grid [0.1, 0.0]: after epoch 0 the lr=0 trial exploits the other's checkpoint
    assert len(results) == 2 and not results.errors
    for i in range(2):
        assert results[i].metrics["epoch"] == 1 and results[i].config["model"]["lr"] in (0.1, 0.0)
    starts = [json.loads(line) for line in record.read_text().splitlines()]
    assert all(row["world_size"] == 2 for row in starts)  # every trial trained on its 2 Ray Train workers
    assert sorted(row["step"] for row in starts)[:2] == [0, 0]
    # restarts from checkpoints (16 rows per worker in batches of 8: 2 steps per epoch): the first after epoch 0,
    # another after epoch 1 if the weak trial is still the weaker one; each trains with its trial's new lr
    restarts = [row for row in starts if row["step"] > 0]
    assert restarts and restarts[0]["step"] == 2 and {row["step"] for row in restarts} <= {2, 4}
    assert all(row["optimizer_lr"] == row["hparams_lr"] for row in restarts)


@pytest.mark.ray
@pytest.mark.slow
def test_a_metric_never_logged_exits_2_naming_the_logged_ones(tmp_path, capsys, local_cluster):
    argv = ["tune", "--config", search_config(tmp_path), *QUIET, "--trainer.max_epochs", "1",
            "--tune.metric", "val_los", "--search_space.model.lr", "choice([0.1])"]  # fmt: skip
    assert cli.main(argv) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line == (
        "lightray tune: error: --tune.metric 'val_los' is never logged: the trials log train_loss, val_loss; "
        "pick one of these"
    )


@pytest.mark.ray
@pytest.mark.slow
def test_optuna_search_over_the_config_that_lightray_fit_saved(tmp_path, capsys, local_cluster):
    cli.run(["fit", *MODEL, *QUIET, "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path)])
    saved = tmp_path / "lightning_logs" / "version_0" / "config.yaml"
    assert yaml.safe_load(saved.read_text())["ckpt_path"] is None  # fit's own option, which a search accepts as null
    capsys.readouterr()
    argv = ["tune", "--config", str(saved), "--tune.metric", "val_loss", "--tune.search_alg", "optuna",
            "--tune.search_alg_args", "{seed: 0}", "--tune.num_samples", "3", "--tune.name", "optuna",
            "--search_space.model.lr", "loguniform(0.001, 0.3)"]  # fmt: skip
    results = cli.run(argv)
    assert len(results) == 3 and not results.errors
    lrs = {results[i].config["model"]["lr"] for i in range(3)}
    assert len(lrs) == 3 and all(0.001 <= lr <= 0.3 for lr in lrs)  # three values sampled by Optuna
    search = tmp_path / "ray_results" / "optuna"  # <trainer.default_root_dir>/ray_results/<tune.name>
    (state,) = search.glob("searcher-state-*.pkl")  # the search algorithm's state, kept for a resume
    assert b"optuna" in state.read_bytes() and not list(search.glob("basic-variant-state-*"))
    out = capsys.readouterr().out
    # the folder is stated at the start and in the summary, which is the last thing printed
    assert f"lightray tune: starting the search in {search}\n" in out
    assert out.rstrip().splitlines()[-1].startswith("output:     each trial's prints, warnings and logs are in")
    assert "3 trials in " + str(search) in out
    for i in range(3):
        log = (search / os.path.basename(results[i].path) / "output.log").read_text()
        assert "`Trainer.fit` stopped: `max_epochs=2` reached." in log  # the trial's own output, kept with it


BAD_SEARCHES = [
    (["--search_space.model.lrr", "uniform(0, 1)"], ["--search_space.model.lrr: unknown key. Did you mean model.lr?",
                                                     "Valid keys: model.lr, model.hidden, model.step_sleep"]),
    (["--search_space.model.init_args.lr", "logunifrom(1e-4, 1)"], ["unknown function 'logunifrom'",
                                                                    "Did you mean loguniform?", "grid_search([a, b"]),
    (["--search_space.model.lr", "loguniform(0, 1)"], ["loguniform(low, high) (0 < low), with low < high"]),
    (["--search_space.model.lr", "uniform(__import__('os'), 1)"], ["the arguments must be literals"]),
    (["--search_space.model.hidden", "8"], ["not a domain expression", "A fixed value goes in --model.hidden"]),
    (["--search_space.data.batch_size", "choice([])"], ["choice([a, b, ...]), with at least one value"]),
    (["--search_space.trainer.num_workers", "choice([1, 2])"], ["the same for every trial of a search",
                                                                "set it with --trainer.num_workers"]),
    (["--search_space.trainer.max_epoch", "choice([1, 2])"], ["Did you mean trainer.max_epochs"]),
    (["--tune.scheduler", "hyperband"], ["--tune.scheduler 'hyperband': unknown scheduler. Valid choices: fifo, "
                                         "asha, pbt"]),
    (["--tune.mode", "minimum", "--tune.metric", ""], ["2 problems", "--tune.metric is required",
                                                       "--tune.mode 'minimum': use min or max"]),
    (["--tune.scheduler", "asha", "--tune.scheduler_args", "{grace: 2}"],
     ["--tune.scheduler_args {'grace': 2}", "unexpected keyword argument 'grace'",
      "asha scheduler (ray.tune.schedulers.AsyncHyperBandScheduler) accepts: time_attr, max_t, grace_period"]),
    (["--tune.resume", "true", "--tune.name", "nothing-here"], ["--tune.resume true: there is no search to resume"]),
    (["--ckpt_path", "last"], ["--ckpt_path 'last': a search's trials start from scratch, or from the checkpoints "
                               "Tune gives them", "Remove ckpt_path (or set it to null)"]),
    (["--tune.search_alg", "optunaa"], ["--tune.search_alg 'optunaa': unknown search algorithm. Did you mean optuna? "
                                        "Valid choices: random, optuna, hyperopt"]),
    (["--tune.search_alg", "optuna"], ["--search_space model.lr: --tune.search_alg optuna samples its own values and "
                                       "takes no grid_search; use choice([...]) instead"]),
    (["--tune.search_alg", "hyperopt", "--tune.search_alg_args", "{seeed: 1}", "--search_space.model.lr",
      "choice([0.1, 0.01])"], ["--tune.search_alg_args {'seeed': 1}", "unexpected keyword argument 'seeed'",
                               "(ray.tune.search.HyperOptSearch) accepts: ", "random_state_seed"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "fragments"), BAD_SEARCHES)
def test_bad_search_input_names_the_problem_and_the_choices(tmp_path, args, fragments):
    with pytest.raises(cli.UsageError) as info:
        cli.run(["tune", "--config", search_config(tmp_path), *args])
    for fragment in fragments:
        assert fragment in str(info.value)


def test_nothing_to_search_and_print_config(tmp_path, capsys):
    with pytest.raises(cli.UsageError, match=r"nothing to search: give --search_space.<key> '<domain>'"):
        cli.run(["tune", *MODEL, "--tune.metric", "val_loss"])
    cli.run(["tune", "--config", search_config(tmp_path), "--search_space.data.batch_size=randint(4, 9)",
             "--print-config"])  # fmt: skip
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["search_space"] == {"model.lr": "grid_search([0.1, 0.0])", "data.batch_size": "randint(4, 9)"}
    assert printed["tune"]["name"].startswith("tune-")  # named, so that the printed config resumes the search
    assert not (tmp_path / "searches").exists()

"""A fixed ASHA search on the digits demo: lightray.tune vs Ray Train + pytorch-lightning + Tune, and vs in-process PL.

Every search runs the same 8 trials (a fixed grid of learning rates, so all see the same configs) of the digits
CNN with the same ASHA scheduler (``max_t`` = max epochs, grace 1, reduction 2), at most two trials at a time on a
2-vCPU machine (1 CPU per trial), one torch thread per training process, and a report with a checkpoint every
validation epoch. Four contenders:

- ``plain``: in-process trials, Ray's plain ``tune.Tuner(tune.with_resources(train_fn, {"cpu": 1}))`` with
  lightray's ``TuneReportCallback`` in the Trainer, Tune's default actor reuse: what a Ray user writes;
- ``plain-1w``: the same plain ``Tuner`` whose trials (``{"cpu": 0.1}``) run ``Trainer(num_workers=1)``: each
  drives a Ray Train run of one worker (0.9 CPU), like for like with ``raytrain`` below;
- ``lightray``: in-process trials, ``lightray.tune.tuner(train_fn, ...)`` with ``TuneReportCallback``,
  ``reuse_actors=True``;
- ``lightning``: in-process trials, a plain Tune function building a ``pytorch_lightning.Trainer`` with
  ``ray.tune.integration.pytorch_lightning.TuneReportCheckpointCallback`` under ``tune.with_resources``,
  ``reuse_actors=True``;
- ``lightray-fresh``: the same, with ``reuse_actors=False`` (a new trial process per trial, as the Ray Train
  trials below get);
- ``lightray-1w``: the same lightray function with ``Trainer(num_workers=1)``, run by
  ``lightray.tune.tuner(..., num_workers=1, resources_per_worker={"CPU": 0.9})``: each trial (0.1 CPU) drives a
  Ray Train run of one worker (0.9 CPU);
- ``raytrain``: the issue's baseline, written as Ray 2.60's docs write it: each trial is a function
  (``tune.with_resources(fn, {"cpu": 0.1})``) that builds a ``ray.train.torch.TorchTrainer`` (1 worker, 0.9 CPU)
  whose train loop runs a ``pytorch_lightning.Trainer`` with ``ray.train.lightning.RayDDPStrategy``,
  ``RayLightningEnvironment``, ``RayTrainReportCallback`` (a report with a checkpoint every epoch, after its
  validation) and ``prepare_trainer``; its ``ray.train.RunConfig(callbacks=[TuneReportCallback()])``
  (``ray.tune.integration.ray_train``) forwards the reports to Tune.

The trials that drive Ray Train runs get a new process each (``reuse_actors=False``). All contenders run
interleaved, round after round (the order reversed every other round), in one Ray cluster started with the
dashboard (Tune's clean-up of a stopped Ray Train trial needs it; the cluster's address is written to
``$RAY_TMPDIR/ray/ray_current_cluster`` so that clean-up finds it when other Ray clusters run on the machine).
Printed: wall time of each search, trials stopped early, per-trial medians (trial start -> first report, time
between reports), and the ratios lightray / Ray Train + PL (in-process and 1-worker lightray trials; target
<= 0.8) and lightray / PL in-process. Figures: bench/RESULTS.md.

    python bench/tune.py [--repeats 2] [--max-epochs 4] [--contenders NAME ...]  (all seven by default)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
import digits  # noqa: E402  (shipped to the trials by value, see main)

LRS = [3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]  # 8 trials, from good to hopeless
CPUS_PER_WORKER = 0.9  # trials with a Ray Train worker: 0.1 CPU for the trial that drives it + 0.9 for the worker
QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False, "enable_checkpointing": False}


def lightray_trial(config: dict) -> None:
    """lightray's trial, in-process (``num_workers=0``) or driving a Ray Train run (``num_workers=1``)."""
    import torch

    import lightray as pl
    from lightray.tune import TuneReportCallback

    pl.seed_everything(0)
    torch.set_num_threads(1)
    workers = config.get("num_workers", 0)
    trainer = pl.Trainer(
        max_epochs=config["max_epochs"],
        num_workers=workers,
        resources_per_worker={"CPU": CPUS_PER_WORKER} if workers else None,
        callbacks=[TuneReportCallback(["val_loss", "val_acc"])],
        **QUIET,
    )
    trainer.fit(digits.DigitsCNN(lr=config["lr"]), datamodule=digits.DigitsData())


def lightning_digits():
    """The demo's module and data on pytorch-lightning's base classes: the same network and methods."""
    import pytorch_lightning as lightning

    class LightningDigitsCNN(lightning.LightningModule):
        def __init__(self, lr: float) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = digits.DigitsCNN(lr).net

        forward, training_step = digits.DigitsCNN.forward, digits.DigitsCNN.training_step
        validation_step, configure_optimizers = digits.DigitsCNN.validation_step, digits.DigitsCNN.configure_optimizers

    class LightningDigitsData(lightning.LightningDataModule):
        def __init__(self, batch_size: int = 64, seed: int = 0) -> None:
            super().__init__()
            self.batch_size, self.seed = batch_size, seed

        setup, train_dataloader, val_dataloader = (
            digits.DigitsData.setup,
            digits.DigitsData.train_dataloader,
            digits.DigitsData.val_dataloader,
        )

    return LightningDigitsCNN, LightningDigitsData


def lightning_trial(config: dict) -> None:
    """The same program against pytorch-lightning, reporting through Ray Tune's own Lightning callback."""
    import pytorch_lightning as lightning
    import torch
    from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback

    module_cls, data_cls = lightning_digits()
    lightning.seed_everything(0, verbose=False)
    torch.set_num_threads(1)
    trainer = lightning.Trainer(
        max_epochs=config["max_epochs"],
        callbacks=[TuneReportCheckpointCallback(["val_loss", "val_acc"], on="validation_end")],
        accelerator="cpu",
        devices=1,
        **QUIET,
    )
    trainer.fit(module_cls(lr=config["lr"]), datamodule=data_cls())


def raytrain_worker(config: dict) -> None:
    """The Ray Train worker's loop of the baseline: pytorch-lightning prepared for Ray Train (ray.train.lightning)."""
    import pytorch_lightning as lightning
    import torch
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback, prepare_trainer

    module_cls, data_cls = lightning_digits()
    lightning.seed_everything(0, verbose=False)
    torch.set_num_threads(1)
    trainer = lightning.Trainer(
        max_epochs=config["max_epochs"],
        devices="auto",
        accelerator="cpu",
        strategy=RayDDPStrategy(),
        plugins=[RayLightningEnvironment()],
        callbacks=[RayTrainReportCallback()],  # a report + checkpoint each epoch end, after that epoch's validation
        **QUIET,
    )
    trainer = prepare_trainer(trainer)
    trainer.fit(module_cls(lr=config["lr"]), datamodule=data_cls())


def raytrain_trial(config: dict) -> None:
    """The baseline's Tune trial: a TorchTrainer of 1 worker whose reports Tune's Ray Train callback forwards."""
    import ray.train
    import ray.tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        raytrain_worker,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": CPUS_PER_WORKER}),
        run_config=ray.train.RunConfig(
            name=f"train-{ray.tune.get_context().get_trial_id()}",
            storage_path=config["storage"],
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def tune_config(max_epochs: int, reuse_actors: bool | None = True):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    return tune.TuneConfig(
        metric="val_loss",
        mode="min",
        scheduler=ASHAScheduler(max_t=max_epochs, grace_period=1, reduction_factor=2),
        max_concurrent_trials=2,
        reuse_actors=reuse_actors,
    )


def run_lightray(storage: str, max_epochs: int, num_workers: int = 0, reuse_actors: bool = True):
    import lightray.tune

    name = f"lightray-{num_workers}w"
    param_space = {"lr": _grid(), "max_epochs": max_epochs, "num_workers": num_workers}
    tuner = lightray.tune.tuner(lightray_trial, param_space=param_space,
                                tune_config=tune_config(max_epochs, reuse_actors=reuse_actors and not num_workers),
                                run_config=_run_config(storage, name), num_workers=num_workers,
                                resources_per_worker={"CPU": CPUS_PER_WORKER})  # fmt: skip
    return tuner.fit()


def run_plain(storage: str, max_epochs: int, num_workers: int = 0):
    """Ray's own Tuner, as its docs write a function trainable; only the callback is lightray's."""
    from ray import tune

    trainable = tune.with_resources(lightray_trial, {"cpu": 1 - CPUS_PER_WORKER if num_workers else 1})
    config = tune_config(max_epochs, reuse_actors=None)  # Tune's default (no reuse)
    tuner = tune.Tuner(trainable, param_space={"lr": _grid(), "max_epochs": max_epochs, "num_workers": num_workers},
                       tune_config=config, run_config=_run_config(storage, f"plain-{num_workers}w"))  # fmt: skip
    return tuner.fit()


def run_plain_1w(storage: str, max_epochs: int):
    return run_plain(storage, max_epochs, num_workers=1)


def run_lightray_fresh(storage: str, max_epochs: int):
    return run_lightray(storage, max_epochs, reuse_actors=False)


def run_lightray_1w(storage: str, max_epochs: int):
    return run_lightray(storage, max_epochs, num_workers=1)


def run_lightning(storage: str, max_epochs: int):
    from ray import tune

    trainable = tune.with_resources(lightning_trial, {"cpu": 1})
    tuner = tune.Tuner(trainable, param_space={"lr": _grid(), "max_epochs": max_epochs},
                       tune_config=tune_config(max_epochs), run_config=_run_config(storage, "lightning"))  # fmt: skip
    return tuner.fit()


def run_raytrain(storage: str, max_epochs: int):
    from ray import tune

    trainable = tune.with_resources(raytrain_trial, {"cpu": 1 - CPUS_PER_WORKER})
    param_space = {"lr": _grid(), "max_epochs": max_epochs, "storage": os.path.join(storage, "train")}
    tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config(max_epochs, reuse_actors=False),
                       run_config=_run_config(storage, "raytrain"))  # fmt: skip
    return tuner.fit()


CONTENDERS = {
    "plain": (run_plain, "plain Tuner + lightray, in-process"),
    "plain-1w": (run_plain_1w, "plain Tuner + lightray, 1 Ray Train worker/trial"),
    "lightray": (run_lightray, "lightray in-process"),
    "lightray-fresh": (run_lightray_fresh, "lightray in-process, a new process per trial"),
    "lightning": (run_lightning, "PL in-process + TuneReportCheckpointCallback"),
    "lightray-1w": (run_lightray_1w, "lightray, 1 Ray Train worker per trial"),
    "raytrain": (run_raytrain, "Ray Train + PL + Tune's TuneReportCallback"),
}


def _trial_times(results) -> tuple[float, float]:
    """Medians over the trials: trial start -> first report (start-up + 1 epoch), and the time between reports."""
    first = [r.metrics_dataframe["time_total_s"].iloc[0] for r in results]
    steps = [d for r in results for d in r.metrics_dataframe["time_this_iter_s"].iloc[1:]]
    return statistics.median(first), statistics.median(steps) if steps else float("nan")


def _grid():
    from ray import tune

    return tune.grid_search(LRS)


def _run_config(storage: str, name: str):
    from ray import tune

    return tune.RunConfig(name=name, storage_path=storage, verbose=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    args = parser.parse_args()

    import ray
    from ray import cloudpickle
    from ray._common.utils import reset_ray_address
    from ray._private.utils import write_ray_address

    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")  # one copy of each worker print, for both
    cloudpickle.register_pickle_by_value(digits)  # the trials need not import the examples folder
    ray.init(num_cpus=2, include_dashboard=True, logging_level="warning")
    # Ray Train's PlacementGroupCleaner (which frees the workers of a trial that Tune stopped) finds the cluster
    # through $RAY_TMPDIR/ray/ray_current_cluster, else by listing the machine's GCS processes, and fails when
    # other Ray clusters run on the machine: then a stopped trial's bundle is never freed and the next trial's
    # worker group waits forever. ray.init does not write that file (`ray start` does), so write it here.
    write_ray_address(ray.get_runtime_context().gcs_address)
    times: dict[str, list[float]] = {name: [] for name in args.contenders}
    stopped: dict[str, list[int]] = {name: [] for name in args.contenders}
    try:
        for round_ in range(args.repeats):
            order = args.contenders if round_ % 2 == 0 else args.contenders[::-1]
            for name in order:
                with tempfile.TemporaryDirectory() as storage:
                    start = time.perf_counter()
                    results = CONTENDERS[name][0](storage, args.max_epochs)
                    times[name].append(time.perf_counter() - start)
                    assert not results.errors, results.errors
                    assert len(results) == len(LRS), len(results)
                    stopped[name].append(sum(len(r.metrics_dataframe) < args.max_epochs for r in results))
                    first, step = _trial_times(results)
                print(f"round {round_ + 1} {name}: {times[name][-1]:.1f} s, {stopped[name][-1]} of {len(LRS)} "
                      f"trials stopped early; per trial (median): start -> 1st report {first:.1f} s, then "
                      f"{step:.2f} s per report", flush=True)  # fmt: skip
    finally:
        reset_ray_address()  # else the next ray.init() here would try to join this (stopped) cluster
        ray.shutdown()
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nmedian wall time of the search over {args.repeats} rounds, {args.max_epochs} epochs at most:")
    for name in args.contenders:
        runs = ", ".join(f"{t:.1f}" for t in times[name])
        print(f"  {CONTENDERS[name][1]:48s} {median[name]:6.1f} s  ({runs}; stopped early: {stopped[name]})")
    ratios = [
        ("plain-1w", "raytrain", " (like for like, target <= 0.8)"),
        ("lightray-1w", "raytrain", " (target <= 0.8)"),
        ("plain", "raytrain", ""),
        ("lightray", "raytrain", ""),
        ("lightray-fresh", "raytrain", ""),
        ("plain", "lightning", ""),
        ("lightray", "lightning", ""),
    ]
    for ours, base, target in ratios:
        if ours in median and base in median:
            print(f"{ours} / {base}: {median[ours] / median[base]:.2f}x{target}")


if __name__ == "__main__":
    main()

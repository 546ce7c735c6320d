"""The digits demo under Ray Tune: 8 trials with ASHA stopping the bad ones early.

    python examples/tune_asha.py                                  # 8 trials, two at a time on a 2-CPU machine
    python examples/tune_asha.py --num-samples 2 --max-epochs 1   # as the tests run it

What the search adds to examples/digits.py: a training function that reads its hyperparameters from
``config`` and reports to Tune through ``TuneReportCallback``, handed to Ray Tune's own ``Tuner`` with a
search space and a scheduler, exactly as Ray documents it. Each trial trains in its own process
(``num_workers=0``); with ``--num-workers 2`` each trial holds a small CPU share and drives a Ray Train run of
2 workers instead. (``lightray.tune.tuner(train_fn, num_workers=..., ...)`` is the shortcut that sizes the
trials and their concurrency from the workers for you.)
"""

from __future__ import annotations

import argparse
import os

from digits import DigitsCNN, DigitsData
from ray import tune
from ray.tune.schedulers import ASHAScheduler

import lightray as pl
import lightray.tune


def train_fn(config: dict) -> None:
    """One trial: the digits program with this trial's hyperparameters (runs in the trial)."""
    pl.seed_everything(0)
    workers = config["num_workers"]
    trainer = pl.Trainer(
        max_epochs=config["max_epochs"],
        num_workers=workers,
        resources_per_worker={"CPU": config["cpus_per_worker"]} if workers else None,
        callbacks=[lightray.tune.TuneReportCallback(["val_loss", "val_acc"])],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(DigitsCNN(lr=config["lr"]), datamodule=DigitsData(batch_size=config["batch_size"]))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--num-workers", type=int, default=0, help="Ray Train workers per trial (0: in the trial)")
    parser.add_argument("--cpus-per-worker", type=float, default=0.4)
    parser.add_argument("--max-concurrent-trials", type=int, default=2, help="trials at once (2 fill 2 CPUs)")
    parser.add_argument("--storage-path", default="ray_results", help="where Tune keeps trials and checkpoints")
    args = parser.parse_args(argv)

    workers = args.num_workers
    # a trial that trains in-process holds one CPU; one that drives Ray Train holds a small share, and its
    # workers ask for their own CPUs, so at most max_concurrent_trials run at once
    trial_resources = {"cpu": 0.1} if workers else {"cpu": 1}
    tuner = tune.Tuner(
        tune.with_resources(train_fn, trial_resources),
        param_space={
            "lr": tune.loguniform(1e-4, 3e-2),
            "batch_size": tune.choice([32, 64, 128]),
            "max_epochs": args.max_epochs,
            "num_workers": workers,
            "cpus_per_worker": args.cpus_per_worker,
        },
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            num_samples=args.num_samples,
            scheduler=ASHAScheduler(max_t=args.max_epochs, grace_period=1, reduction_factor=2),
            max_concurrent_trials=args.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(name="tune-asha", storage_path=os.path.abspath(args.storage_path), verbose=1),
    )
    results = tuner.fit()
    best = results.get_best_result()
    model = lightray.tune.load_best(results, DigitsCNN)  # the best trial's weights, ready to use
    print(f"best config: lr={best.config['lr']:.2e} batch_size={best.config['batch_size']}")
    print(f"best trial: val_loss={best.metrics['val_loss']:.4f} after {best.metrics['training_iteration']} epochs")
    print(f"checkpoint: {lightray.tune.checkpoint_path(best)} ({type(model).__name__})")
    print(f"search folder: {results.experiment_path}")
    print(f"validation accuracy: {best.metrics['val_acc']:.4f}")
    return dict(best.metrics)


if __name__ == "__main__":
    main()

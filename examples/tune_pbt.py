"""Population Based Training on the digits demo: trials copy the best ones' checkpoints and mutate lr.

    python examples/tune_pbt.py                                   # 4 trials, 8 epochs, perturbing every 2
    python examples/tune_pbt.py --num-samples 2 --max-epochs 2    # as the tests run it

Every validation epoch ``TuneReportCallback`` reports with a checkpoint. When PBT makes a weak trial
exploit a strong one, the weak trial restarts from the strong one's checkpoint (weights, optimizer
moments, loop position) with a mutated ``lr``, and that new ``lr`` is the one it trains with.
"""

from __future__ import annotations

import argparse
import os

import torch
from digits import DigitsCNN, DigitsData
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining

import lightray as pl
import lightray.tune


class ConstantLRDigits(DigitsCNN):
    """The demo's CNN with a constant learning rate: under PBT the search itself is the schedule."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def train_fn(config: dict) -> None:
    """One trial (runs in the trial); restarts from PBT's checkpoint on its own."""
    pl.seed_everything(0)
    trainer = pl.Trainer(
        max_epochs=config["max_epochs"],
        callbacks=[lightray.tune.TuneReportCallback(["val_loss", "val_acc"])],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(ConstantLRDigits(lr=config["lr"]), datamodule=DigitsData(batch_size=64))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--perturbation-interval", type=int, default=2)
    parser.add_argument("--storage-path", default="ray_results", help="where Tune keeps trials and checkpoints")
    args = parser.parse_args(argv)

    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=args.perturbation_interval,
        hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1)},
    )
    tuner = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 1}),
        param_space={"lr": tune.loguniform(1e-4, 1e-1), "max_epochs": args.max_epochs},
        tune_config=tune.TuneConfig(
            metric="val_loss", mode="min", num_samples=args.num_samples, scheduler=pbt, max_concurrent_trials=2
        ),
        run_config=tune.RunConfig(
            name="tune-pbt",
            storage_path=os.path.abspath(args.storage_path),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=4),
            verbose=1,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result()
    model = lightray.tune.load_best(results, ConstantLRDigits)
    print(f"best trial: lr={best.config['lr']:.2e} val_loss={best.metrics['val_loss']:.4f} ({type(model).__name__})")
    print(f"validation accuracy: {best.metrics['val_acc']:.4f}")
    print(f"search folder: {results.experiment_path}")
    return dict(best.metrics)


if __name__ == "__main__":
    main()

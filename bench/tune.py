"""A fixed ASHA search on the digits demo: lightray.tune vs pytorch-lightning + Ray Tune's own callback.

Both searches run the same 8 trials (a fixed grid of learning rates, so both see the same configs) of the
digits CNN, in-process trials with 1 CPU each (two at a time on a 2-vCPU machine), the same ASHA scheduler,
a report and a checkpoint every validation epoch, and the same Tune settings (``reuse_actors=True``):

- lightray: ``lightray.tune.tuner(train_fn, ...)`` with ``TuneReportCallback``;
- baseline: a plain Tune function building a ``pytorch_lightning.Trainer`` with
  ``ray.tune.integration.pytorch_lightning.TuneReportCheckpointCallback``, under ``tune.with_resources``.

The two run alternately in the same Ray cluster; printed: wall time of each search, trials stopped early,
and the ratio lightray / baseline (target <= 0.8).

    python bench/tune.py [--repeats 2] [--max-epochs 4]
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


def lightray_trial(config: dict) -> None:
    import torch

    import lightray as pl
    from lightray.tune import TuneReportCallback

    pl.seed_everything(0)
    torch.set_num_threads(1)
    trainer = pl.Trainer(
        max_epochs=config["max_epochs"],
        callbacks=[TuneReportCallback(["val_loss", "val_acc"])],
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    trainer.fit(digits.DigitsCNN(lr=config["lr"]), datamodule=digits.DigitsData())


def lightning_trial(config: dict) -> None:
    """The same program against pytorch-lightning, reporting through Ray Tune's own Lightning callback."""
    import pytorch_lightning as lightning
    import torch
    from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback

    # the demo's module and data on Lightning's base classes: the same network and methods
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

    lightning.seed_everything(0, verbose=False)
    torch.set_num_threads(1)
    trainer = lightning.Trainer(
        max_epochs=config["max_epochs"],
        callbacks=[TuneReportCheckpointCallback(["val_loss", "val_acc"], on="validation_end")],
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(LightningDigitsCNN(lr=config["lr"]), datamodule=LightningDigitsData())


def tune_config(max_epochs: int):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    return tune.TuneConfig(
        metric="val_loss",
        mode="min",
        scheduler=ASHAScheduler(max_t=max_epochs, grace_period=1, reduction_factor=2),
        max_concurrent_trials=2,
        reuse_actors=True,
    )


def run_lightray(storage: str, max_epochs: int):
    import lightray.tune

    param_space = {"lr": _grid(), "max_epochs": max_epochs}
    tuner = lightray.tune.tuner(lightray_trial, param_space=param_space, tune_config=tune_config(max_epochs),
                                run_config=_run_config(storage, "lightray"))  # fmt: skip
    return tuner.fit()


def run_lightning(storage: str, max_epochs: int):
    from ray import tune

    trainable = tune.with_resources(lightning_trial, {"cpu": 1})
    tuner = tune.Tuner(trainable, param_space={"lr": _grid(), "max_epochs": max_epochs},
                       tune_config=tune_config(max_epochs), run_config=_run_config(storage, "lightning"))  # fmt: skip
    return tuner.fit()


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
    args = parser.parse_args()

    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(digits)  # the trials need not import the examples folder
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    times: dict[str, list[float]] = {"lightray": [], "lightning": []}
    stopped: dict[str, list[int]] = {"lightray": [], "lightning": []}
    for _ in range(args.repeats):
        for name, run in (("lightray", run_lightray), ("lightning", run_lightning)):
            with tempfile.TemporaryDirectory() as storage:
                start = time.perf_counter()
                results = run(storage, args.max_epochs)
                times[name].append(time.perf_counter() - start)
                assert not results.errors, results.errors
                stopped[name].append(sum(len(r.metrics_dataframe) < args.max_epochs for r in results))
            print(f"{name}: {times[name][-1]:.1f} s, {stopped[name][-1]} of {len(LRS)} trials stopped early")
    ray.shutdown()
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nmedian wall time of the search: lightray {median['lightray']:.1f} s, "
          f"pytorch-lightning + Tune's callback {median['lightning']:.1f} s")  # fmt: skip
    print(f"lightray / baseline: {median['lightray'] / median['lightning']:.2f}x (target <= 0.8)")


if __name__ == "__main__":
    main()

"""2-worker DDP on one machine: lightray vs a hand-written TorchTrainer loop vs Ray Train + pytorch-lightning.

The MLP workload of ``loop_overhead.py`` (64-256-256-10, batch 64 per worker, 32,768 random samples,
Adam, one thread per worker, a loss logged every step), 2 Ray Train workers with 0.7 CPU each, run
interleaved. Rank 0 stamps every step; the driver stamps the fit call. Printed per contender:
steady-state steps/s per rank (after 20 warm-up steps), fit call -> first step, last step -> fit
returns, and end-to-end wall time, with ratios from this run.

    python bench/ddp.py [--repeats 2] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

N, BATCH, WARMUP = 32768, 64, 20
SCALING = dict(num_workers=2, resources_per_worker={"CPU": 0.7})


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def make_dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(N, 64, generator=g), torch.randint(0, 10, (N,), generator=g))


def write_stamps(path: str, stamps: list[float]) -> None:
    with open(path, "w") as f:
        json.dump(stamps, f)


# ---------------------------------------------------------------------- 1. hand-written TorchTrainer loop
def plain_train_fn(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    torch.set_num_threads(1)
    model = ray.train.torch.prepare_model(make_net())
    loader = ray.train.torch.prepare_data_loader(DataLoader(make_dataset(), batch_size=BATCH, shuffle=True))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stamps, losses = [], []
    for epoch in range(config["epochs"]):
        if ray.train.get_context().get_world_size() > 1:
            loader.sampler.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            stamps.append(time.time())
    if ray.train.get_context().get_world_rank() == 0:
        write_stamps(config["stamps"], stamps)
    ray.train.report({"loss": float(losses[-1])})


def run_plain(folder: str, epochs: int) -> tuple[float, float]:
    import ray.train
    from ray.train.torch import TorchTrainer

    config = {"epochs": epochs, "stamps": os.path.join(folder, "plain.json")}
    run_config = ray.train.RunConfig(storage_path=folder, name=f"plain-{time.time_ns()}")
    trainer = TorchTrainer(plain_train_fn, train_loop_config=config, scaling_config=ray.train.ScalingConfig(**SCALING),
                           run_config=run_config)  # fmt: skip
    start = time.time()
    trainer.fit()
    return start, time.time()


# ---------------------------------------------------------------------- 2. Ray Train + pytorch-lightning
def lightning_train_fn(config: dict[str, Any]) -> None:
    import pytorch_lightning as pl
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback, prepare_trainer

    torch.set_num_threads(1)
    module = lightning_module(pl)()
    stamps = StampCallback(pl, config["stamps"])()
    trainer = pl.Trainer(
        max_epochs=config["epochs"], devices="auto", accelerator="cpu", strategy=RayDDPStrategy(),
        plugins=[RayLightningEnvironment()], callbacks=[RayTrainReportCallback(), stamps],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, logger=False,
    )  # fmt: skip
    trainer = prepare_trainer(trainer)
    trainer.fit(module, DataLoader(make_dataset(), batch_size=BATCH, shuffle=True))


def run_lightning(folder: str, epochs: int) -> tuple[float, float]:
    import ray.train
    from ray.train.torch import TorchTrainer

    config = {"epochs": epochs, "stamps": os.path.join(folder, "lightning.json")}
    run_config = ray.train.RunConfig(storage_path=folder, name=f"pl-{time.time_ns()}")
    trainer = TorchTrainer(lightning_train_fn, train_loop_config=config,
                           scaling_config=ray.train.ScalingConfig(**SCALING), run_config=run_config)  # fmt: skip
    start = time.time()
    trainer.fit()
    return start, time.time()


# ---------------------------------------------------------------------- 3. lightray
def run_lightray(folder: str, epochs: int) -> tuple[float, float]:
    import lightray

    trainer = lightray.Trainer(
        max_epochs=epochs, callbacks=[StampCallback(lightray, os.path.join(folder, "lightray.json"))()],
        storage_path=folder, name=f"lightray-{time.time_ns()}", enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, logger=False, **SCALING,
    )  # fmt: skip
    start = time.time()
    trainer.fit(lightning_module(lightray)(), DataLoader(make_dataset(), batch_size=BATCH, shuffle=True))
    return start, time.time()


# ---------------------------------------------------------------------- shared pieces
def lightning_module(pl: Any) -> type:
    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return MLP


def StampCallback(pl: Any, path: str) -> Any:  # noqa: N802 - builds a Callback class for either framework
    class Stamps(pl.Callback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            self.stamps.append(time.time())

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.global_rank == 0:
                write_stamps(path, self.stamps)

    return lambda: Stamps()


def summarize(start: float, end: float, stamps: list[float]) -> dict[str, float]:
    steady = (len(stamps) - 1 - WARMUP) / (stamps[-1] - stamps[WARMUP])
    return {"steps_per_s": steady, "to_first_step": stamps[0] - start, "after_last_step": end - stamps[-1],
            "wall": end - start}  # fmt: skip


def main() -> None:
    import logging

    import ray

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    ray.init(num_cpus=2, logging_level=logging.WARNING)
    runners = {"hand-written TorchTrainer": (run_plain, "plain"), "Ray Train + Lightning": (run_lightning,
               "lightning"), "lightray": (run_lightray, "lightray")}  # fmt: skip
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runners}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.repeats):
            for name, (run, key) in runners.items():
                start, end = run(folder, args.epochs)
                with open(os.path.join(folder, f"{key}.json")) as f:
                    results[name].append(summarize(start, end, json.load(f)))
                print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[name][-1].items()),
                      flush=True)  # fmt: skip
    med = {name: {k: statistics.median(run[k] for run in runs) for k in runs[0]} for name, runs in results.items()}
    print(f"\nmedians over {args.repeats} rounds (2 workers x 0.7 CPU, {N // BATCH // 2} steps per epoch per rank):")
    print(f"{'':28s}{'steps/s/rank':>14s}{'fit->1st step':>15s}{'last->return':>14s}{'wall':>8s}")
    for name, m in med.items():
        print(f"{name:28s}{m['steps_per_s']:14.1f}{m['to_first_step']:14.1f}s{m['after_last_step']:13.1f}s"
              f"{m['wall']:7.1f}s")  # fmt: skip
    ours, plain, lit = med["lightray"], med["hand-written TorchTrainer"], med["Ray Train + Lightning"]
    print(f"lightray steady state / hand-written TorchTrainer: {ours['steps_per_s'] / plain['steps_per_s']:.3f}x "
          "(target >= 0.95)")  # fmt: skip
    print(f"lightray wall time / Ray Train + Lightning:        {ours['wall'] / lit['wall']:.3f}x (target <= 0.8)")
    ray.shutdown()


if __name__ == "__main__":
    main()

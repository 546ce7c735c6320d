"""Loop overhead: a hand-written PyTorch loop vs lightray vs pytorch-lightning on the same MLP.

MLP 64-256-256-10, batch 64, 32,768 random samples, Adam, one thread, a loss logged every step.
Runs are interleaved (plain, lightray, lightning) and repeated; medians are reported, with ratios
against the plain loop measured in the same run. Also compares ``import lightray`` with
``import pytorch_lightning``.

    python bench/loop_overhead.py [--repeats 5] [--epochs 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

N, BATCH, IN, OUT = 32768, 64, 64, 10


def make_net() -> nn.Module:
    return nn.Sequential(nn.Linear(IN, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, OUT))


def make_loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, IN, generator=g), torch.randint(0, OUT, (N,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, generator=g)


def plain(epochs: int) -> float:
    torch.manual_seed(0)
    net, loader = make_net(), make_loader()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    steps, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.detach())  # what a logger keeps
            steps += 1
    return steps / (time.perf_counter() - start)


def framework(pl: object, epochs: int) -> float:
    class Timer(pl.Callback):  # type: ignore[name-defined, misc]
        def on_train_start(self, trainer, pl_module):  # type: ignore[no-untyped-def]
            self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
            self.rate = trainer.global_step / (time.perf_counter() - self.start)

    class MLP(pl.LightningModule):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    timer = Timer()
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(  # type: ignore[attr-defined]
            max_epochs=epochs,
            callbacks=[timer],
            default_root_dir=root,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=1,
        )
        trainer.fit(MLP(), make_loader())
    return timer.rate


def import_time(module: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import logging

    import pytorch_lightning

    import lightray

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    rates: dict[str, list[float]] = {"plain": [], "lightray": [], "lightning": []}
    for r in range(args.repeats):
        rates["plain"].append(plain(args.epochs))
        rates["lightray"].append(framework(lightray, args.epochs))
        rates["lightning"].append(framework(pytorch_lightning, args.epochs))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} steps/s" for k, v in rates.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    best = {k: max(v) for k, v in rates.items()}
    # Ratios within a round share the machine's momentary load; their median is the robust figure.
    vs_plain = statistics.median(o / p for o, p in zip(rates["lightray"], rates["plain"]))
    vs_pl = statistics.median(o / p for o, p in zip(rates["lightray"], rates["lightning"]))
    pl_plain = statistics.median(o / p for o, p in zip(rates["lightning"], rates["plain"]))
    print(f"\nsteps/s over {args.repeats} rounds ({args.epochs} epochs of {N // BATCH} steps): median / best")
    for name in rates:
        print(f"  {name:10s} {med[name]:7.1f} / {best[name]:7.1f}")
    print("median of per-round ratios (best-vs-best in brackets):")
    print(f"  lightray / plain loop : {vs_plain:.3f}x [{best['lightray'] / best['plain']:.3f}x]  (target >= 0.97)")
    print(f"  lightray / lightning  : {vs_pl:.3f}x [{best['lightray'] / best['lightning']:.3f}x]  (target >= 1.3)")
    print(f"  lightning / plain loop: {pl_plain:.3f}x [{best['lightning'] / best['plain']:.3f}x]")

    ours, theirs = import_time("lightray"), import_time("pytorch_lightning")
    print(
        f"\nimport lightray {ours:.2f} s, import pytorch_lightning {theirs:.2f} s: "
        f"{ours / theirs:.2f}x  (target <= 0.5)"
    )


if __name__ == "__main__":
    main()

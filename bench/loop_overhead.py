"""Loop overhead: a hand-written PyTorch loop vs lightray vs pytorch-lightning on the same MLP, in CPU time per step.

MLP 64-256-256-10, batch 64, 32,768 random samples (512 steps an epoch), Adam, one torch thread, a loss logged
every step; CSV logger on, progress bar / checkpointing / model summary off for both frameworks.

Each measurement is a fresh subprocess that trains ``WARMUP`` steps, then counts the process CPU time
(``time.process_time``: every thread of the process, not the machine's other load) from the start of step
``WARMUP`` to the start of step ``WARMUP + steps``. Round i runs every contender once, in an order rotated by i;
the best of the rounds is each contender's figure. The same subprocess also times importing its framework.

``--compare-with PATH`` adds "lightray@before": lightray from another source tree (e.g. a ``git worktree`` of an
older commit), first on the subprocess's ``sys.path`` through PYTHONPATH, measured in the same rounds.

    python bench/loop_overhead.py [--rounds 7] [--steps 1000] [--compare-with /tmp/lightray-before]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

N, BATCH, IN, OUT = 32768, 64, 64, 10
WARMUP = 100
REPO = Path(__file__).resolve().parent.parent
FRAMEWORKS = {"plain": "torch", "lightray": "lightray", "lightning": "pytorch_lightning"}


class Clock:
    """Process CPU seconds from the start of step ``warmup`` to the start of step ``warmup + steps``."""

    def __init__(self, steps: int) -> None:
        self.steps, self.start = steps, 0.0
        self.cpu: float | None = None

    def tick(self, step: int) -> None:
        if step == WARMUP:
            self.start = time.process_time()
        elif step == WARMUP + self.steps:
            self.cpu = time.process_time() - self.start


def make_net() -> Any:
    from torch import nn

    return nn.Sequential(nn.Linear(IN, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, OUT))


def make_loader() -> Any:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, IN, generator=g), torch.randint(0, OUT, (N,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, generator=g)


def plain(clock: Clock) -> None:
    import torch

    net, loader = make_net(), make_loader()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses, step = [], 0
    while True:
        for x, y in loader:
            clock.tick(step)
            if step == WARMUP + clock.steps:
                return
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.detach())  # what a logger keeps
            step += 1


def framework(pl: Any, clock: Clock) -> None:
    import torch

    class Tick(pl.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            clock.tick(trainer.global_step)

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_net()

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            max_steps=WARMUP + clock.steps + 1,
            callbacks=[Tick()],
            default_root_dir=root,
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=1,
        )
        trainer.fit(MLP(), make_loader())


def worker(kind: str, steps: int, source: str | None) -> None:
    """One measurement, in this (fresh) process: prints a JSON line."""
    start = time.process_time()
    module = importlib.import_module(FRAMEWORKS[kind])
    import_cpu = time.process_time() - start
    if source is not None and not Path(str(module.__file__)).resolve().is_relative_to(Path(source).resolve()):
        sys.exit(f"{kind} was imported from {module.__file__}, not from {source}: check PYTHONPATH / the path given")
    import logging

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    clock = Clock(steps)
    if kind == "plain":
        plain(clock)
    else:
        framework(module, clock)
    if clock.cpu is None:
        sys.exit(f"{kind}: the clock never stopped (fewer than {WARMUP + steps} steps ran)")
    print(json.dumps({"us": clock.cpu / steps * 1e6, "import_s": import_cpu, "file": module.__file__}))


def measure(kind: str, steps: int, source: Path | None) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if kind == "lightray@before":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))
    args = ["--worker", kind.partition("@")[0], "--steps", str(steps)] + (["--source", str(source)] if source else [])
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"measuring {kind} failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=1000, help=f"timed steps per run (after {WARMUP} warm-up ones)")
    parser.add_argument("--compare-with", type=Path, help="another lightray source tree, measured as lightray@before")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.steps, args.source)

    sources: dict[str, Path | None] = {"plain": None, "lightray": REPO, "lightning": None}
    if args.compare_with:
        if not (args.compare_with / "lightray" / "__init__.py").exists():
            sys.exit(f"--compare-with {args.compare_with}: no lightray/__init__.py there")
        sources["lightray@before"] = args.compare_with.resolve()
    names = list(sources)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(measure(name, args.steps, sources[name]))
        print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]['us']:.0f}" for n, v in runs.items()) + " CPU-us/step")

    best = {name: min(run["us"] for run in v) for name, v in runs.items()}
    print(f"\n{args.rounds} rounds of {args.steps} steps, process CPU time, one torch thread")
    header = ("contender", "best us/step", "median", "overhead us", "plain/it", "import s")
    print("{:16s} {:>12s} {:>8s} {:>11s} {:>8s} {:>8s}".format(*header))
    for name, v in runs.items():
        median = statistics.median(run["us"] for run in v)
        imports = min(run["import_s"] for run in v)
        print(
            f"{name:16s} {best[name]:12.1f} {median:8.1f} {best[name] - best['plain']:+11.1f}"
            f" {best['plain'] / best[name]:7.3f}x {imports:8.2f}"
        )
    for name in ("lightray", "lightray@before"):
        if name in runs:
            print(f"  {name} from {runs[name][0]['file']}")
    print(
        f"\nlightray overhead per step: {best['lightray'] - best['plain']:+.1f} CPU-us "
        f"(plain / lightray = {best['plain'] / best['lightray']:.3f}x, best vs best)"
    )
    if "lightray@before" in best:
        print(
            f"lightray@before overhead per step: {best['lightray@before'] - best['plain']:+.1f} CPU-us "
            f"(plain / lightray@before = {best['plain'] / best['lightray@before']:.3f}x); "
            f"lightray - lightray@before: {best['lightray'] - best['lightray@before']:+.1f} CPU-us per step"
        )


if __name__ == "__main__":
    main()

"""FSDP vs DDP on 2 Ray Train workers (CPU, gloo): state held per worker, peak memory, step time, save time.

A GPT-like model of about 100M parameters (width 1024, 8 blocks, vocab 256), AdamW, batches of 2 sequences of 32
tokens per worker, one thread per worker, a few steps. Contenders, run one after another on one local Ray
cluster: DDP, FSDP with sharded checkpoints (the default), FSDP with ``state_dict_type="full"``, FSDP with the
model created on the meta device (``trainer.init_module(empty_init=True)``: no worker builds it whole). Each worker
measures: the bytes of parameters + gradients + optimizer state it holds (its shards under FSDP), its peak
resident memory, the median step time after the first step, and the time of one checkpoint save at the end
(sharded: every rank writes its shards; full: gathered and written by rank 0). Printed with ratios to DDP.

    python bench/fsdp.py [--width 1024] [--depth 8] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

from fsdp_transformer import Block, LanguageModel  # noqa: E402

import lightray as pl  # noqa: E402


class Measure(pl.Callback):
    """Per rank: step times, the state it holds, peak memory, and one timed save at the end, to a JSON file."""

    def __init__(self, out_dir: str, label: str) -> None:
        self.out_dir, self.label = out_dir, label
        self.steps: list[float] = []
        self.started = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(time.perf_counter() - self.started)

    def on_train_end(self, trainer, pl_module):
        def local(t: torch.Tensor) -> torch.Tensor:
            return t.to_local() if hasattr(t, "to_local") else t

        held = sum(local(p).numel() * local(p).element_size() for p in pl_module.parameters())
        held += sum(local(p.grad).numel() * local(p.grad).element_size() for p in pl_module.parameters()
                    if p.grad is not None)  # fmt: skip
        for state in trainer.optimizers[0].state.values():
            held += sum(local(v).numel() * local(v).element_size() for v in state.values() if torch.is_tensor(v))
        started = time.perf_counter()
        trainer.save_checkpoint(os.path.join(self.out_dir, f"{self.label}-end.ckpt"))
        save_s = time.perf_counter() - started
        result = {
            "state_mb": held / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "step_s": statistics.median(self.steps[1:]),
            "save_s": save_s,
        }
        with open(os.path.join(self.out_dir, f"{self.label}-rank{trainer.global_rank}.json"), "w") as f:
            json.dump(result, f)


def run(label: str, strategy, args, out_dir: str, empty_init: bool = False) -> dict[str, float]:
    pl.seed_everything(0)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 256, (2 * 2 * args.steps, 33), generator=g)
    loader = DataLoader(TensorDataset(tokens), batch_size=2, collate_fn=lambda rows: torch.stack([r[0] for r in rows]))
    trainer = pl.Trainer(max_steps=args.steps, num_workers=2, resources_per_worker={"CPU": 1}, strategy=strategy,
                         storage_path=os.path.join(out_dir, "runs"), name=label, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[Measure(out_dir, label)], limit_val_batches=0)  # fmt: skip
    with trainer.init_module(empty_init=empty_init):  # empty: on the meta device, each worker makes its shards
        model = LanguageModel(width=args.width, depth=args.depth, heads=8, context=33)
    trainer.fit(model, loader)
    ranks = []
    for rank in (0, 1):
        with open(os.path.join(out_dir, f"{label}-rank{rank}.json")) as f:
            ranks.append(json.load(f))
    return {key: max(r[key] for r in ranks) for key in ranks[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    import ray

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    params = sum(p.numel() for p in LanguageModel(width=args.width, depth=args.depth, heads=8, context=33).parameters())
    print(f"model: {params / 1e6:.1f}M parameters; 2 workers x 1 CPU; {args.steps} steps of 2 x 32 tokens per worker")
    contenders = {
        "ddp": "ddp",
        "fsdp-sharded": pl.strategies.FSDPStrategy(auto_wrap_policy={Block}),
        "fsdp-full": pl.strategies.FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full"),
        "fsdp-meta": pl.strategies.FSDPStrategy(auto_wrap_policy={Block}),
    }
    with tempfile.TemporaryDirectory(prefix="lightray-bench-fsdp-") as out_dir:
        results = {label: run(label, strategy, args, out_dir, empty_init=label == "fsdp-meta")
                   for label, strategy in contenders.items()}  # fmt: skip
    ray.shutdown()
    base = results["ddp"]
    print(f"{'contender':<14} {'state MB/worker':>16} {'peak RSS MB':>12} {'step s':>8} {'save s':>8}")
    for label, r in results.items():
        print(f"{label:<14} {r['state_mb']:>16.0f} {r['peak_rss_mb']:>12.0f} {r['step_s']:>8.2f} {r['save_s']:>8.2f}")
    fsdp, full = results["fsdp-sharded"], results["fsdp-full"]
    print(f"state per worker FSDP/DDP: {fsdp['state_mb'] / base['state_mb']:.2f}x (target <= 0.6)")
    print(
        f"peak RSS per worker FSDP/DDP: {fsdp['peak_rss_mb'] / base['peak_rss_mb']:.2f}x; with the model made on "
        f"the meta device: {results['fsdp-meta']['peak_rss_mb'] / base['peak_rss_mb']:.2f}x"
    )
    print(f"step time FSDP/DDP: {fsdp['step_s'] / base['step_s']:.2f}x")
    print(f"save time sharded/full: {fsdp['save_s'] / full['save_s']:.2f}x (target <= 0.6)")


if __name__ == "__main__":
    main()

"""Recovery after a worker is SIGKILLed: time from the kill to the first resumed step, and the work lost.

2 Ray Train workers train the MLP workload with a checkpoint every ``--every`` optimizer steps; rank 1
SIGKILLs itself once at step ``--kill-at``. Rank 0 stamps every step (step number, time) into a file
that survives the restart. Printed: seconds from the kill to the first step after the restart, and
the steps trained again (target: at most one checkpoint interval).

    python bench/recovery.py [--every 50] [--kill-at 130]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ddp  # noqa: E402 - the shared workload

import lightray  # noqa: E402


class StampAndKill(lightray.Callback):
    def __init__(self, folder: str, kill_at: int) -> None:
        self.folder, self.kill_at = folder, kill_at

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        now = time.time()
        if trainer.global_rank == 0:
            with open(os.path.join(self.folder, "stamps.txt"), "a") as f:
                f.write(f"{trainer.global_step} {now}\n")
        marker = os.path.join(self.folder, "killed")
        if trainer.global_rank == 1 and trainer.global_step == self.kill_at and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    import logging

    import ray
    from torch.utils.data import DataLoader

    parser = argparse.ArgumentParser()
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--kill-at", type=int, default=130)
    args = parser.parse_args()
    ray.init(num_cpus=2, logging_level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        trainer = lightray.Trainer(
            max_epochs=1, num_workers=2, max_failures=1, storage_path=folder, name="recovery",
            callbacks=[StampAndKill(folder, args.kill_at),
                       lightray.callbacks.ModelCheckpoint(every_n_train_steps=args.every, save_top_k=-1)],
            enable_progress_bar=False, enable_model_summary=False, logger=False,
        )  # fmt: skip
        trainer.fit(ddp.lightning_module(lightray)(), DataLoader(ddp.make_dataset(), batch_size=64, shuffle=True))
        with open(os.path.join(folder, "killed")) as f:
            killed_at = float(f.read())
        with open(os.path.join(folder, "stamps.txt")) as f:
            stamps = [(int(step), float(t)) for step, t in (line.split() for line in f)]
    # the restarted attempt is where the step counter goes back
    restart = next(i for i in range(1, len(stamps)) if stamps[i][0] <= stamps[i - 1][0])
    last_before = max(step for step, _ in stamps[:restart])
    first_step, first_time = stamps[restart]
    lost = last_before - (first_step - 1)
    print(f"checkpoint every {args.every} steps; rank 1 killed at step {args.kill_at}")
    print(f"time from the kill to the first resumed step: {first_time - killed_at:.1f} s")
    print(f"resumed at step {first_step} (last step before the kill: {last_before}): {lost} steps trained again "
          f"({'within' if lost <= args.every else 'MORE than'} one checkpoint interval)")  # fmt: skip
    print(f"final global step {trainer.global_step}")
    ray.shutdown()


if __name__ == "__main__":
    main()

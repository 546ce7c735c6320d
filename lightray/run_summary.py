"""The lines a finished stage prints about itself: how far it went and where its results are.

Printed once, by the process that ran the loop as global rank 0 (locally, or rank 0 of a Ray run, whose output
reaches the driver before its result), through the ``lightray`` logger after Lightning's own closing line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lightray import storage
from lightray.states import TrainerFn

if TYPE_CHECKING:
    from lightray.trainer import Trainer


def summary(trainer: Trainer, fn: TrainerFn, seconds: float) -> str:
    """What a finished stage did and where it put things: logs (and their files), checkpoints, the run folder."""
    if fn == TrainerFn.FITTING and trainer.fit_loop.ended_by_tuner:
        return ""  # the Tuner reports its own result
    position = f" at epoch {trainer.current_epoch}, step {trainer.global_step}" if fn == TrainerFn.FITTING else ""
    lines = [f"lightray: {fn.value} finished{position} in {_duration(seconds)}"]
    for logger in trainer.loggers:
        folder = getattr(logger, "log_dir", None)
        if folder and not storage.is_remote(str(folder)):
            lines.append(f"  logs         {os.path.abspath(folder)} ({_contents(trainer, str(folder))})")
    if fn == TrainerFn.FITTING:
        for callback in trainer.checkpoint_callbacks:
            best, last = callback.best_model_path, callback.last_model_path
            score = callback.best_model_score
            if best and callback.monitor and score is not None:
                lines.append(f"  best         {best} ({callback.monitor}={float(score):.4g})")
            elif best:
                lines.append(f"  checkpoint   {best}")
            if last and last != best:
                lines.append(f"  last         {last}")
    run_dir = trainer.strategy.run_dir
    if run_dir is not None:
        from lightray.ray_backend.output import log_folder

        has_config = not storage.is_remote(run_dir) and os.path.isfile(os.path.join(run_dir, "config.yaml"))
        lines.append(f"  run folder   {run_dir} (Ray Train's checkpoints and run state{', config.yaml' * has_config})")
        worker_logs = log_folder(run_dir)
        lines.append(f"  worker logs  {worker_logs or 'in Ray session folders of the nodes'}")
    return "\n".join(lines)


def _contents(trainer: Trainer, folder: str) -> str:
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if names:
        return ", ".join(names)
    if trainer.global_step < trainer.log_every_n_steps:
        return (
            f"nothing logged yet: training logs every log_every_n_steps={trainer.log_every_n_steps} steps and this run "
            f"made {trainer.global_step}"
        )
    return "empty"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs:.0f} s" if minutes else f"{secs:.1f} s"

"""What each Ray Train worker runs: build the driver's Trainer with the worker's DDP strategy, resume from the
checkpoint Ray Train registered (if any), run the stage in-process, and send rank 0's results to the driver."""

from __future__ import annotations

import logging
import os
import traceback
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from lightray.checkpoint import CHECKPOINT_FILE
from lightray.errors import add_note
from lightray.ray_backend.output import captured, log_folder, sync_output

if TYPE_CHECKING:
    from lightray.trainer import Trainer


@dataclass
class StageRequest:
    """Everything a worker needs to rebuild the driver's Trainer and run one stage (sent by the driver)."""

    stage: str
    trainer_kwargs: dict[str, Any]
    callbacks: list[Any]
    loggers: list[Any]
    module: Any
    datamodule: Any
    sources: dict[str, Any]
    ckpt_path: str | None
    run_dir: str
    seed: int | None
    threads: int
    full_world_size: int  # workers the run asks for (the most, when elastic): the global batch is set for them
    channel: Any
    stage_kwargs: dict[str, Any] = field(default_factory=dict)


WORKER_TRACEBACK = "Traceback on Ray Train worker"


def train_fn(config: dict[str, Any]) -> None:
    """The function each Ray Train worker runs (on every worker)."""
    import ray.train

    request: StageRequest = config["request"]
    rank = ray.train.get_context().get_world_rank()
    # each rank's output to its log file; rank 0's also to the driver's display, in order with the progress
    with captured(log_folder(request.run_dir), rank, request.channel if rank == 0 else None) as output:
        # Ray raises worker processes' root logger to INFO, which prints every ``ray.train.report`` call;
        # user code on a worker logs as in any Python process (WARNING and above).
        logging.getLogger().setLevel(logging.WARNING)
        # lightray's INFO lines ("`Trainer.fit` stopped: ...") reach the driver before its result when the output
        # goes through the channel; printed by Ray, they would come after it
        logging.getLogger("lightray").setLevel(logging.INFO if output is not None else logging.WARNING)
        try:
            _run_stage(request, rank == 0)
        except Exception as err:  # the driver raises it again: give it the frames it went through here
            frames = "".join(traceback.format_tb(err.__traceback__))
            add_note(err, f"{WORKER_TRACEBACK} rank {rank} (most recent call last):\n{frames.rstrip()}")
            raise


def _run_stage(request: StageRequest, rank0: bool) -> None:
    import ray.train

    from lightray.ray_backend.channel import send_result, set_driver_channel
    from lightray.ray_backend.history import HistoryLogger
    from lightray.seed import seed_everything

    torch.set_num_threads(request.threads)
    if request.seed is not None:
        seed_everything(request.seed)
    if rank0:
        request.channel.progress.remote([("started",)])  # stops the driver's watchdog
    trainer = _worker_trainer(request, rank0)
    if rank0:
        trainer.loggers.append(HistoryLogger(request.channel))
        set_driver_channel(request.channel)  # for callbacks that have the driver run something (Tune reports)

    run = getattr(trainer, request.stage)
    stage_args = _stage_args(request)
    restored = ray.train.get_checkpoint()
    if restored is not None and request.stage == "fit":
        with restored.as_directory() as folder:
            ckpt_path = _usable_restore_path(os.path.join(folder, CHECKPOINT_FILE), restored.path, request.run_dir,
                                             rank0)  # fmt: skip
            step = _global_step(ckpt_path)
            if rank0:
                request.channel.restart_from.remote(step)
                _set_aside_unregistered(request.run_dir, step)
            output = run(request.module, ckpt_path=ckpt_path, **stage_args)
    else:
        if rank0 and request.stage == "fit" and request.ckpt_path is None:
            _set_aside_unregistered(request.run_dir, -1)
        output = run(request.module, ckpt_path=request.ckpt_path, **stage_args)
    weights = trainer.strategy.module_state_dict(
        trainer.lightning_module
    )  # on every rank: gathering sharded (FSDP) weights is collective
    if rank0:
        sync_output()  # the stage's last lines reach the driver before its result
        send_result(request.channel, stage_result(trainer, output, weights))


def _worker_trainer(request: StageRequest, rank0: bool) -> Trainer:
    """The driver's Trainer, built with this worker's DDP strategy; it runs its stages in-process."""
    from ray.train.torch import get_device

    from lightray.callbacks.progress import ProgressBar
    from lightray.strategies.ddp import ddp_kwargs
    from lightray.strategies.fsdp import fsdp_options
    from lightray.strategies.ray_ddp import RayDDPStrategy
    from lightray.strategies.ray_fsdp import RayFSDPStrategy
    from lightray.trainer import Trainer

    common: dict[str, Any] = {"run_dir": request.run_dir, "planned_world_size": request.full_world_size,
                              "sync_batchnorm": bool(request.trainer_kwargs.get("sync_batchnorm"))}  # fmt: skip
    fsdp = fsdp_options(request.trainer_kwargs.get("strategy"))
    strategy = (
        RayFSDPStrategy(get_device(), fsdp, **common)
        if fsdp is not None
        else RayDDPStrategy(get_device(), ddp_kwargs=ddp_kwargs(request.trainer_kwargs.get("strategy")), **common)
    )
    kwargs = dict(request.trainer_kwargs)
    # none of the Ray options that would launch workers again
    kwargs.update(callbacks=request.callbacks, logger=request.loggers if rank0 else False, num_workers=0,
                  scaling_config=None, run_config=None, num_nodes=1, devices=1, strategy=strategy)  # fmt: skip
    trainer = Trainer(**kwargs)
    if not rank0:
        for callback in trainer.callbacks:
            if isinstance(callback, ProgressBar):
                callback.refresh_rate = 0
    return trainer


def _usable_restore_path(path: str, registered: str, run_dir: str, rank0: bool) -> str:
    """The checkpoint to resume from: the one Ray Train registered when it passes lightray's checks; else (set
    aside as ``*.damaged``, with a warning) the newest usable checkpoint folder of the run."""
    from lightray import storage
    from lightray.checkpoint import CheckpointError, load_checkpoint_file, load_first_usable

    try:
        load_checkpoint_file(path, map_location="cpu")
        return path
    except CheckpointError as err:
        problem = err
    if storage.is_remote(run_dir):
        raise CheckpointError(
            f"{problem} It is the newest checkpoint Ray Train registered for {run_dir}; move it aside (or delete it) "
            "and rerun: the run resumes from the newest checkpoint left."
        ) from problem
    if rank0 and os.path.isdir(registered):
        os.replace(registered, registered + ".damaged")
        warnings.warn(f"{problem} It was moved to {registered}.damaged; resuming from the checkpoint before it.",
                      stacklevel=2)  # fmt: skip
    loaded = load_first_usable(run_checkpoints(run_dir), rank0, "resume after a failure")
    if loaded is None:
        raise CheckpointError(f"{problem} No other checkpoint of the run in {run_dir} to resume from.") from problem
    return os.path.join(loaded.path, CHECKPOINT_FILE)


def run_checkpoints(run_dir: str) -> list[str]:
    """The checkpoint folders of a run (local), newest (highest global step) first; unreadable ones first of all,
    so that loading them sets them aside with their reason."""
    from lightray import storage

    folders = [os.path.join(run_dir, name) for name in storage.listdir(run_dir) if name.endswith(".ckpt")]
    with_file = (f for f in folders if os.path.isfile(os.path.join(f, CHECKPOINT_FILE)))
    return sorted(with_file, key=_step_or_last, reverse=True)


def _step_or_last(folder: str) -> int:
    try:
        return _global_step(os.path.join(folder, CHECKPOINT_FILE))
    except Exception:
        return 1 << 62  # unreadable: tried first, so it is set aside with its reason


def _stage_args(request: StageRequest) -> dict[str, Any]:
    sources, stage = request.sources, request.stage
    if stage == "fit":
        args = {"train_dataloaders": sources.get("train"), "val_dataloaders": sources.get("val")}
    else:
        key = {"validate": "val", "test": "test", "predict": "predict"}[stage]
        args = {"dataloaders": sources.get(key)}
    args["datamodule"] = request.datamodule
    args.update(request.stage_kwargs)
    return args


def stage_result(trainer: Trainer, output: Any, weights: dict[str, Any]) -> dict[str, Any]:
    """What rank 0 sends back to the driver when the stage ends: ``weights`` (the module's full state dict),
    metrics, position, callback states."""

    def cpu(value: Any) -> Any:
        return value.detach().cpu() if isinstance(value, torch.Tensor) else value

    return {
        "state_dict": {k: v.detach().cpu() for k, v in weights.items()},
        "callback_metrics": {k: cpu(v) for k, v in trainer.callback_metrics.items()},
        "logged_metrics": {k: cpu(v) for k, v in trainer.logged_metrics.items()},
        "progress_bar_metrics": {k: cpu(v) for k, v in trainer.progress_bar_metrics.items()},
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "should_stop": trainer.should_stop,
        "callback_states": [_callback_state(cb) for cb in trainer.callbacks],
        "output": output,
    }


def _callback_state(callback: Any) -> dict[str, Any] | None:
    try:
        return callback.state_dict() or None
    except Exception:  # a callback whose state cannot be read is left as it is on the driver
        return None


def _global_step(path: str) -> int:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(checkpoint.get("global_step", 0))


def _set_aside_unregistered(run_dir: str, restored_step: int) -> None:
    """Move checkpoints newer than the one Ray restored (a hard crash left them unregistered) aside.

    They are kept, renamed ``<name>.unregistered``, and named in a warning: never silently lost,
    never reused by mistake.
    """
    from lightray import storage

    if storage.is_remote(run_dir) or not os.path.isdir(run_dir):
        return
    for name in storage.listdir(run_dir):
        folder = os.path.join(run_dir, name)
        path = os.path.join(folder, CHECKPOINT_FILE)
        if not name.endswith(".ckpt") or not os.path.isfile(path):  # set aside already (.damaged, .unregistered)
            continue
        try:
            step = _global_step(path)
        except Exception:
            step = restored_step + 1  # unreadable: certainly not the one to resume from
        if step > restored_step:
            aside = folder + ".unregistered"
            os.replace(folder, aside)
            warnings.warn(
                f"Checkpoint {folder} (global step {step}) was written after the last checkpoint Ray Train "
                f"registered (step {restored_step}), probably just before a crash. It is not used; it was moved "
                f"to {aside}.",
                stacklevel=2,
            )

"""Running a Trainer stage on Ray Train workers: the driver side (``launch``) and the worker side (``train_fn``).

The driver packs the module, data and callbacks, starts a ``ray.train.torch.TorchTrainer`` whose
workers each rebuild the same Trainer with a :class:`RayDDPStrategy`, and runs the same loop there.
When the stage ends it copies the trained weights and metrics back into the driver's objects.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.trainer import Trainer

CHECKPOINT_FILE = "checkpoint.ckpt"
_LIBRARIES = {"lightray", "torch", "ray", "pytorch_lightning", "lightning"}  # imported on workers, never by value


@dataclass
class Payload:
    """Everything a worker needs to rebuild the driver's Trainer and run one stage."""

    stage: str
    trainer_kwargs: dict[str, Any]
    callbacks: list[Any]
    loggers: list[Any]
    module: Any
    datamodule: Any
    sources: dict[str, Any]
    ckpt_path: str | None
    run_dir: str
    seed: str | None
    threads: int
    full_world_size: int  # workers the run asks for (the most, when elastic): the global batch is set for them
    channel: Any
    stage_kwargs: dict[str, Any] = field(default_factory=dict)


# ====================================================================== driver
def launch(trainer: Trainer, stage: str, stage_kwargs: dict[str, Any] | None = None) -> Any:
    """Run ``stage`` (fit, validate, test, predict) of ``trainer`` on Ray workers; runs on the driver."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from lightray.callbacks.progress import ProgressBar, default_renderer
    from lightray.ray_backend.channel import ChannelRenderer, DriverChannel, ProgressRelay, receive_result
    from lightray.ray_backend.config import check_fits, check_room_for_ray_data, ray_configs, worker_resources

    _quiet_ray_defaults()
    if not ray.is_initialized():
        ray.init(logging_config=ray.LoggingConfig(log_level="WARNING"), logging_level=logging.WARNING)
    scaling, run = ray_configs(trainer)
    check_fits(scaling)
    if _feeds_ray_data(trainer._sources):  # a datamodule's Ray datasets are checked on the workers
        per_worker = float(worker_resources(scaling)["CPU"])
        check_room_for_ray_data(ray.cluster_resources().get("CPU", 0.0), _most_workers(scaling), per_worker)
    run_dir = _join(run.storage_path, run.name)
    # on the driver's own node: it must outlive any worker node that fails
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    channel = DriverChannel.options(scheduling_strategy=here).remote()  # type: ignore[attr-defined]
    bar = next((cb for cb in trainer.callbacks if isinstance(cb, ProgressBar)), None)
    callbacks = list(trainer.callbacks)
    if bar is not None:  # rank 0 feeds the driver's one bar
        local_renderer, bar.renderer = bar.renderer, ChannelRenderer(channel)
    payload = Payload(
        stage=stage,
        trainer_kwargs=dict(trainer._init_kwargs),
        callbacks=callbacks,
        loggers=trainer.loggers,
        module=trainer.lightning_module,
        datamodule=trainer.datamodule,
        sources=trainer._sources,
        ckpt_path=trainer.ckpt_path,
        run_dir=run_dir,
        seed=os.environ.get("PL_GLOBAL_SEED"),
        threads=_threads(scaling),
        full_world_size=_most_workers(scaling),
        channel=channel,
        stage_kwargs=stage_kwargs or {},
    )
    _pickle_user_code_by_value(payload)
    ray_trainer = TorchTrainer(train_fn, train_loop_config={"payload": payload}, scaling_config=scaling,
                               run_config=run)  # fmt: skip
    try:
        with ProgressRelay(channel, local_renderer if bar is not None else default_renderer()):
            ray_trainer.fit()
    except ray.train.TrainingFailedError as err:
        _reraise_user_error(err)
    finally:
        if bar is not None:
            bar.renderer = local_renderer
    final, history = receive_result(channel)
    ray.kill(channel)
    if final is None:
        raise RuntimeError("The Ray workers finished without sending their results back; see the worker logs.")
    return _apply_final(trainer, final, history)


def _most_workers(scaling: Any) -> int:
    return scaling.num_workers if isinstance(scaling.num_workers, int) else scaling.num_workers[1]


def _threads(scaling: Any) -> int:
    """Torch threads per worker: its whole CPUs, at least one."""
    resources: dict[str, Any] = dict(scaling.resources_per_worker or {})
    return max(1, int(resources.get("CPU", 1)))


def _apply_final(trainer: Trainer, final: dict[str, Any], history: list[dict[str, Any]]) -> Any:
    """Copy rank 0's results into the driver's trainer, module and callbacks."""
    module = trainer.lightning_module
    if final.get("state_dict") is not None:
        module.load_state_dict(final["state_dict"])
    trainer.callback_metrics.update(final["callback_metrics"])
    trainer.logged_metrics.update(final["logged_metrics"])
    trainer.progress_bar_metrics.update(final["progress_bar_metrics"])
    trainer.logged_metrics_history = history
    trainer._loop.state.epoch = final["epoch"]
    trainer._loop.state.global_step = final["global_step"]
    trainer.should_stop = final["should_stop"]
    for callback, state in zip(trainer.callbacks, final["callback_states"]):
        if state is not None:
            callback.load_state_dict(state)
    return final.get("output")


def _feeds_ray_data(sources: dict[str, Any]) -> bool:
    from lightray.data import RayDataLoader, as_loader_list, is_ray_dataset

    return any(
        is_ray_dataset(loader) or isinstance(loader, RayDataLoader)
        for source in sources.values()
        for loader in as_loader_list(source, "")
    )


def _quiet_ray_defaults() -> None:
    # Ray's own switches, propagated by Ray Train to its workers: one copy of each worker print, and
    # quicker noticing of finished or failed workers.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def _join(base: str | None, name: str | None) -> str:
    from lightray import storage

    assert base is not None and name is not None
    return storage.join(base, name)


def _pickle_user_code_by_value(payload: Payload) -> None:
    """Ship the user's own modules with the payload, so workers need not import them from disk."""
    from ray import cloudpickle

    objects = [payload.module, payload.datamodule, *payload.callbacks, *payload.sources.values()]
    for obj in objects:
        module_name = type(obj).__module__ if obj is not None else "builtins"
        module = sys.modules.get(module_name)
        path = getattr(module, "__file__", None) or ""
        package = module_name.split(".")[0]
        user_code = package != "__main__" and path and "site-packages" not in path and package not in _LIBRARIES
        if user_code:
            cloudpickle.register_pickle_by_value(module)
    try:
        cloudpickle.dumps(payload)
    except Exception as err:
        raise MisconfigurationError(
            f"The module, data or callbacks cannot be sent to the Ray workers: {type(err).__name__}: {err}. "
            "Everything passed to the Trainer must be picklable: define classes and functions at module level "
            "(not inside other functions), and avoid open files, locks or live connections as attributes "
            "(create them in `setup` instead)."
        ) from err


def _reraise_user_error(err: Exception) -> None:
    """Raise the user's own exception from the failed worker (lowest rank), with its remote traceback."""
    failures = getattr(err, "worker_failures", None) or {}
    for rank in sorted(failures):
        failure = failures[rank]
        cause = getattr(failure, "cause", None)  # a RayTaskError wraps the original exception
        original = cause if isinstance(cause, BaseException) else failure
        if isinstance(original, BaseException):
            note = f"(raised on Ray Train worker rank {rank}; its traceback:)\n{failure}"
            if hasattr(original, "add_note"):
                original.add_note(note)
            raise original from err
    raise err


# ====================================================================== worker
def train_fn(config: dict[str, Any]) -> None:
    """The function each Ray Train worker runs: rebuild the Trainer, resume if Ray has a checkpoint, run."""
    import ray.train
    from ray.train.torch import get_device

    from lightray.callbacks.progress import ProgressBar
    from lightray.precision import make_precision
    from lightray.seed import seed_everything
    from lightray.strategies.ray_ddp import RayDDPStrategy
    from lightray.trainer import Trainer

    payload: Payload = config["payload"]
    # Ray raises worker processes' root logger to INFO, which prints every ``ray.train.report`` call;
    # user code on a worker logs as in any Python process (WARNING and above).
    logging.getLogger().setLevel(logging.WARNING)
    torch.set_num_threads(payload.threads)
    if payload.seed is not None:
        seed_everything(int(payload.seed))
    context = ray.train.get_context()
    rank0 = context.get_world_rank() == 0
    kwargs = dict(payload.trainer_kwargs)
    # the worker's Trainer runs in-process: none of the Ray options that would launch workers again
    kwargs.update(callbacks=payload.callbacks, logger=payload.loggers if rank0 else False, num_workers=0,
                  scaling_config=None, run_config=None, num_nodes=1, accelerator="cpu", devices=1)  # fmt: skip
    kwargs.pop("precision", None)
    trainer = Trainer(**kwargs)
    device = get_device()
    trainer.strategy = RayDDPStrategy(device, run_dir=payload.run_dir)
    trainer.precision_plugin = make_precision(payload.trainer_kwargs.get("precision", "32-true"), device.type)
    trainer.precision = trainer.precision_plugin.name
    if not rank0:
        for callback in trainer.callbacks:
            if isinstance(callback, ProgressBar):
                callback.refresh_rate = 0
    if trainer.world_size != payload.full_world_size:  # an elastic run started with fewer workers
        trainer._loop._adapt_to_world_size(payload.full_world_size, trainer.accumulate_grad_batches)
    if rank0:
        from lightray.ray_backend.channel import set_driver_channel
        from lightray.ray_backend.history import HistoryLogger

        trainer.loggers.append(HistoryLogger(payload.channel))
        set_driver_channel(payload.channel)  # for callbacks that have the driver run something (Tune reports)

    ckpt_path = payload.ckpt_path
    restored = ray.train.get_checkpoint()
    module = payload.module
    run = getattr(trainer, payload.stage)
    stage_args = _stage_args(payload)
    if restored is not None and payload.stage == "fit":
        with restored.as_directory() as folder:
            ckpt_path = os.path.join(folder, CHECKPOINT_FILE)
            step = _global_step(ckpt_path)
            if rank0:
                payload.channel.restart_from.remote(step)
                _set_aside_unregistered(payload.run_dir, step)
            output = run(module, ckpt_path=ckpt_path, **stage_args)
    else:
        if rank0 and payload.stage == "fit" and ckpt_path is None:
            _set_aside_unregistered(payload.run_dir, -1)
        output = run(module, ckpt_path=ckpt_path, **stage_args)
    if rank0:
        from lightray.ray_backend.channel import send_result

        send_result(payload.channel, _final_payload(trainer, output))


def _stage_args(payload: Payload) -> dict[str, Any]:
    sources, stage = payload.sources, payload.stage
    if stage == "fit":
        args = {"train_dataloaders": sources.get("train"), "val_dataloaders": sources.get("val")}
    else:
        key = {"validate": "val", "test": "test", "predict": "predict"}[stage]
        args = {"dataloaders": sources.get(key)}
    args["datamodule"] = payload.datamodule
    args.update(payload.stage_kwargs)
    return args


def _final_payload(trainer: Trainer, output: Any) -> dict[str, Any]:
    def cpu(value: Any) -> Any:
        return value.detach().cpu() if isinstance(value, torch.Tensor) else value

    return {
        "state_dict": {k: v.detach().cpu() for k, v in trainer.lightning_module.state_dict().items()},
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
        if not os.path.isfile(path):
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

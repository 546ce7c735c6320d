"""``RayLauncher``: runs a Trainer's stage on Ray Train workers (driver side).

It packs the module, data and callbacks into a :class:`~lightray.ray_backend.worker.StageRequest`, starts a
``ray.train.torch.TorchTrainer`` whose workers each rebuild the same Trainer with a DDP strategy and run the
same loop, relays rank 0's progress to the driver's display, and, when the stage ends, copies the trained
weights and metrics back into the driver's objects.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lightray.errors import MisconfigurationError, add_note
from lightray.ray_backend.worker import WORKER_TRACEBACK
from lightray.states import TrainerFn

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.ray_backend.options import RayOptions
    from lightray.trainer import Trainer


class RayLauncher:
    """Runs each stage on Ray Train workers, as ``options`` say; ``trainer_kwargs`` rebuild the Trainer there."""

    def __init__(self, options: RayOptions, trainer_kwargs: dict[str, Any]) -> None:
        self.options = options
        self.trainer_kwargs = trainer_kwargs

    def launch(self, trainer: Trainer, fn: TrainerFn, run: Callable[[], Any]) -> Any:
        """Run stage ``fn`` on the workers (``run`` is what each of them runs in-process); on the driver."""
        import ray
        import ray.train
        from ray.train.torch import TorchTrainer
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from lightray import storage
        from lightray.callbacks.progress import ProgressBar, default_renderer
        from lightray.ray_backend.channel import ChannelRenderer, DriverChannel, ProgressRelay, receive_result
        from lightray.ray_backend.config import ray_configs
        from lightray.ray_backend.output import log_folder, show_all
        from lightray.ray_backend.placement import check_fits, check_room_for_ray_data, worker_resources
        from lightray.ray_backend.watchdog import Watchdog
        from lightray.ray_backend.worker import StageRequest, train_fn
        from lightray.seed import global_seed
        from lightray.tune import trial as tune_trial

        options = tune_trial.match_workers(self.options) if fn == TrainerFn.FITTING else self.options
        _quiet_ray_defaults()
        if not ray.is_initialized():
            _start_ray()
        scaling, run_config = ray_configs(options, trainer.default_root_dir, trainer.checkpoint_callback)
        check_fits(scaling)
        if _feeds_ray_data(trainer.data_sources.given):  # a datamodule's Ray datasets are checked on the workers
            per_worker = float(worker_resources(scaling)["CPU"])
            check_room_for_ray_data(ray.cluster_resources().get("CPU", 0.0), _most_workers(scaling), per_worker)
        # on the driver's own node: it must outlive any worker node that fails
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        channel = DriverChannel.options(scheduling_strategy=here).remote()  # type: ignore[attr-defined]
        bar = next((cb for cb in trainer.callbacks if isinstance(cb, ProgressBar)), None)
        if bar is not None:  # rank 0 feeds the driver's one bar
            local_renderer, bar.renderer = bar.renderer, ChannelRenderer(channel)
        run_dir = storage.join(str(run_config.storage_path), str(run_config.name))  # ray_configs sets both
        ckpt_path = trainer.ckpt_path
        if fn == TrainerFn.FITTING and ckpt_path is None:
            ckpt_path = _check_run_state(run_dir)
        request = StageRequest(
            stage=fn.value,
            trainer_kwargs=dict(self.trainer_kwargs),
            callbacks=list(trainer.callbacks),
            loggers=trainer.loggers,
            module=trainer.lightning_module,
            datamodule=trainer.datamodule,
            sources=trainer.data_sources.given,
            ckpt_path=ckpt_path,
            run_dir=run_dir,
            seed=global_seed(),
            threads=_threads(scaling),
            full_world_size=_most_workers(scaling),
            channel=channel,
            # workers print no results table: the driver does
            stage_kwargs={"verbose": False} if fn in (TrainerFn.VALIDATING, TrainerFn.TESTING) else {},
        )
        _check_picklable(request)
        logs = log_folder(run_dir)
        output = (
            "every rank's output prints here through Ray (LIGHTRAY_RAY_OUTPUT=all)"
            if show_all()
            else f"rank 0's output shows here, every rank's goes to {logs or 'Ray worker logs'}"
        )
        say(f"{fn.value}: starting {_describe_workers(scaling)}; {output}")
        ray_trainer = TorchTrainer(train_fn, train_loop_config={"request": request}, scaling_config=scaling,
                                   run_config=run_config)  # fmt: skip
        try:
            relay = ProgressRelay(channel, local_renderer if bar is not None else default_renderer())
            with relay, Watchdog(relay.started):
                ray_trainer.fit()
        except ray.train.TrainingFailedError as err:
            _reraise_worker_error(err, options.max_failures if options.run_config is None else None, logs)
        finally:
            if bar is not None:
                bar.renderer = local_renderer
        result, history = receive_result(channel)
        ray.kill(channel)
        if result is None:
            raise RuntimeError("The Ray workers finished without sending their results back; see the worker logs.")
        trainer.logged_metrics_history = history
        return _apply_result(trainer, result)


def say(message: str) -> None:
    """A line from lightray on the driver's stderr: what the run is doing while nothing else shows."""
    print(f"lightray: {message}", file=sys.stderr, flush=True)


class _TokenNotice(logging.Filter):
    """Drops Ray's notice that it turned token authentication on; ``_start_ray`` says it in its own line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled for this Ray cluster" not in record.getMessage()


def _start_ray() -> None:
    """Start (or, with ``RAY_ADDRESS``, join) Ray for this driver. Unless ``LIGHTRAY_RAY_OUTPUT=all``, Ray's own
    processes print nothing here (``log_to_driver=False``): the workers' output comes through the driver channel."""
    import ray

    from lightray.ray_backend.output import show_all

    address = os.environ.get("RAY_ADDRESS")
    say(f"connecting to the Ray cluster at {address}" if address else "starting a local Ray cluster")
    notice, token_filter = logging.getLogger("ray._private.authentication.authentication_token_setup"), _TokenNotice()
    notice.addFilter(token_filter)
    try:
        ray.init(logging_config=ray.LoggingConfig(log_level="WARNING"), logging_level=logging.WARNING,
                 log_to_driver=show_all())  # fmt: skip
    finally:
        notice.removeFilter(token_filter)
    auth = os.environ.get("RAY_AUTH_MODE", "token" if not address else "")
    resources = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
    say(f"Ray is ready: {resources}" + ("; token authentication on (RAY_AUTH_MODE=disabled turns it off)"
                                        if auth == "token" else ""))  # fmt: skip


def _describe_workers(scaling: Any) -> str:
    count = scaling.num_workers if isinstance(scaling.num_workers, int) else "{}-{}".format(*scaling.num_workers)
    each = ", ".join(f"{v:g} {k}" for k, v in sorted(dict(scaling.resources_per_worker or {}).items()))
    return f"{count} Ray Train worker{'s' if count != 1 else ''}" + (f" ({each} each)" if each else "")


def _threads(scaling: Any) -> int:
    """Torch threads per worker: its whole CPUs, at least one."""
    return max(1, int(dict(scaling.resources_per_worker or {}).get("CPU", 1)))


def _check_run_state(run_dir: str) -> str | None:
    """Ray Train's own state of a rerun (``checkpoint_manager_snapshot.json``), when damaged, stops Ray with an
    error that names nothing. Set it aside, say so, and resume from the run's newest usable checkpoint instead
    (lightray's checkpoint folders are enough); returns that checkpoint, or None when the state is sound."""
    import json
    import warnings

    from lightray import storage
    from lightray.checkpoint import load_first_usable
    from lightray.ray_backend.worker import run_checkpoints

    snapshot = os.path.join(run_dir, "checkpoint_manager_snapshot.json")
    if storage.is_remote(run_dir) or not os.path.isfile(snapshot):
        return None
    try:
        with open(snapshot) as f:
            json.load(f)
        return None
    except (OSError, ValueError) as err:
        os.replace(snapshot, snapshot + ".damaged")
        loaded = load_first_usable(run_checkpoints(run_dir), True, "resume with Ray Train's run state damaged")
        resume = loaded.path if loaded is not None else None
        warnings.warn(
            f"Ray Train's run state {snapshot} is damaged ({type(err).__name__}: {err}); it was moved to "
            f"{snapshot}.damaged, and the run resumes from "
            + (f"its newest checkpoint, {resume}." if resume else "scratch: it has no checkpoint folder."),
            stacklevel=4,
        )
        return resume


def _most_workers(scaling: Any) -> int:
    return scaling.num_workers if isinstance(scaling.num_workers, int) else scaling.num_workers[1]


def _take_weights(module: LightningModule, state_dict: dict[str, Any]) -> None:
    """Load rank 0's weights into the driver's module. Layers that ``configure_model`` built on the workers are
    built here on the meta device first; meta tensors (those, or FSDP's empty init) take the loaded ones."""
    import torch

    from lightray.core.module import LightningModule as Base
    from lightray.hooks import is_overridden

    if not set(state_dict) <= set(module.state_dict()) and is_overridden(module, "configure_model", Base):
        with torch.device("meta"):
            module.configure_model()
    meta = any(t.is_meta for t in (*module.parameters(), *module.buffers()))
    module.load_state_dict(state_dict, assign=meta)


def _apply_result(trainer: Trainer, result: dict[str, Any]) -> Any:
    """Copy rank 0's results into the driver's trainer, module and callbacks."""
    if result.get("state_dict") is not None:
        _take_weights(trainer.lightning_module, result["state_dict"])
    trainer.callback_metrics.update(result["callback_metrics"])
    trainer.logged_metrics.update(result["logged_metrics"])
    trainer.progress_bar_metrics.update(result["progress_bar_metrics"])
    trainer.fit_loop.state.epoch = result["epoch"]
    trainer.fit_loop.state.global_step = result["global_step"]
    trainer.should_stop = result["should_stop"]
    for callback, state in zip(trainer.callbacks, result["callback_states"]):
        if state is not None:
            callback.load_state_dict(state)
    return result.get("output")


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


def _check_picklable(request: Any) -> None:
    """Ship the user's own modules with the request, and fail clearly when something cannot travel."""
    from ray import cloudpickle

    from lightray.ray_backend.user_code import register_by_value

    register_by_value([request.module, request.datamodule, *request.callbacks, *request.sources.values()])
    try:
        cloudpickle.dumps(request)
    except Exception as err:
        raise MisconfigurationError(
            f"The module, data or callbacks cannot be sent to the Ray workers: {type(err).__name__}: {err}. "
            "Everything passed to the Trainer must be picklable: define classes and functions at module level "
            "(not inside other functions), and avoid open files, locks or live connections as attributes "
            "(create them in `setup` instead)."
        ) from err


class WorkerDiedError(RuntimeError):
    """A Ray Train worker process ended without a Python exception, and no retry was left."""


# What the other ranks report when a peer dies: a consequence, never the cause
_COLLATERAL = ("Connection reset by peer", "Connection closed by peer", "gloo", "NCCL communicator was aborted")


def _reraise_worker_error(err: Exception, max_failures: int | None, logs: str | None = None) -> None:
    """Raise what went wrong on the workers: the worker that died (no Python error: a signal, the out-of-memory
    killer), or else the user's own exception from the lowest rank, with its remote traceback and where every
    rank's output is (``logs``)."""
    where = f"every rank's output is in {logs}" if logs else "every rank's output is in Ray's worker logs"
    failures = getattr(err, "worker_failures", None) or {}
    died = {
        rank: f
        for rank, f in failures.items()
        if type(f).__name__ in ("WorkerHealthCheckFailedError", "ActorDiedError", "ActorUnavailableError")
    }
    if died:
        rank = min(died)
        first = str(died[rank]).strip().splitlines()[0] if str(died[rank]).strip() else ""
        spent = (
            f"max_failures={max_failures} is spent ({max_failures + 1} attempt{'s' if max_failures else ''})"
            if max_failures is not None
            else "the run_config's FailureConfig allows no more retries"
        )
        raise WorkerDiedError(
            f"Ray Train worker rank {rank} died: its process ended without a Python error (killed by a signal such "
            f"as SIGKILL, or by the out-of-memory killer; its log under Ray's session folder says which; {where}), and "
            f"{spent}. Ray reported: {type(died[rank]).__name__}: {first}. Raise max_failures to retry more, and "
            "check the node's memory if it was the OOM killer."
        ) from err
    own = {rank: f for rank, f in failures.items() if not any(sign in str(f) for sign in _COLLATERAL)}
    for rank in sorted(own or failures):
        failure = failures[rank]
        cause = getattr(failure, "cause", None)  # a RayTaskError wraps the original exception
        original = cause if isinstance(cause, BaseException) else failure
        if isinstance(original, BaseException):
            if any(WORKER_TRACEBACK in note for note in getattr(original, "__notes__", ())):
                add_note(original, f"({where})")
                raise original from None  # the worker's own traceback is in its note: Ray's copy would repeat it
            add_note(original, f"(raised on Ray Train worker rank {rank}; {where}; its traceback:)\n{failure}")
            raise original from err
    raise err

"""Checks and conversions of Trainer arguments: every problem listed at once; limits, max_time, devices, the
strategy, default callbacks and loggers. Run on the driver when a Trainer is built."""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from lightray.errors import MisconfigurationError
from lightray.precision import PRECISIONS
from lightray.strategies import Strategy
from lightray.strategies.ddp import strategy_problem
from lightray.strategies.fsdp import fsdp_options
from lightray.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from lightray.callbacks.callback import Callback
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class Checked(NamedTuple):
    max_time: float | None  # seconds
    device: torch.device  # of the in-process loop
    num_workers: int | tuple[int, int]
    use_gpu: bool


def check_arguments(args: dict[str, Any]) -> Checked:
    """Raise one error listing every invalid argument of ``Trainer(**args)``; else the values they come to."""
    errors: list[str] = []
    if str(args["precision"]) not in PRECISIONS:
        errors.append(f"precision={args['precision']!r}: use one of {list(PRECISIONS)}")
    for arg in ("max_epochs", "min_epochs", "min_steps"):
        value = args[arg]
        unlimited = arg == "max_epochs" and value == -1
        if value is not None and (not isinstance(value, int) or value < 0) and not unlimited:
            note = " (or -1 for no limit)" if arg == "max_epochs" else ""
            errors.append(f"{arg}={value!r}: must be a non-negative int{note}")
    max_steps = args["max_steps"]
    if not isinstance(max_steps, int) or max_steps < -1:
        errors.append(f"max_steps={max_steps!r}: must be -1 (no limit) or a non-negative int")
    for stage in ("train", "val", "test", "predict"):
        errors += check_limit(f"limit_{stage}_batches", args[f"limit_{stage}_batches"])
    interval = args["val_check_interval"]
    if isinstance(interval, float) and not 0.0 < interval <= 1.0:
        errors.append(f"val_check_interval={interval}: a float must be in (0.0, 1.0]; an int counts batches")
    elif isinstance(interval, int) and interval < 1:
        errors.append(f"val_check_interval={interval}: an int must be >= 1")
    every = args["check_val_every_n_epoch"]
    if every is not None and (not isinstance(every, int) or every < 1):
        errors.append(f"check_val_every_n_epoch={every!r}: must be an int >= 1 or None")
    reload_every = args["reload_dataloaders_every_n_epochs"]
    if not isinstance(reload_every, int) or reload_every < 0:
        errors.append(f"reload_dataloaders_every_n_epochs={reload_every!r}: must be an int >= 0 (0: load once)")
    accumulate = args["accumulate_grad_batches"]
    if not isinstance(accumulate, int) or accumulate < 1:
        errors.append(f"accumulate_grad_batches={accumulate!r}: must be an int >= 1")
    clip = args["gradient_clip_val"]
    if clip is not None and (not isinstance(clip, int | float) or clip < 0):
        errors.append(f"gradient_clip_val={clip!r}: must be a number >= 0")
    if args["gradient_clip_algorithm"] not in (None, "norm", "value"):
        errors.append(f"gradient_clip_algorithm={args['gradient_clip_algorithm']!r}: use 'norm' or 'value'")
    sanity = args["num_sanity_val_steps"]
    if sanity is not None and (not isinstance(sanity, int) or sanity < -1):
        errors.append(f"num_sanity_val_steps={sanity!r}: must be -1 (all) or an int >= 0")
    every_n = args["log_every_n_steps"]
    if every_n is not None and (not isinstance(every_n, int) or every_n < 1):
        errors.append(f"log_every_n_steps={every_n!r}: must be an int >= 1")
    fast = args["fast_dev_run"]
    if isinstance(fast, int) and not isinstance(fast, bool) and fast < 0:
        errors.append(f"fast_dev_run={fast}: must be a bool or an int >= 0")
    if args["deterministic"] not in (None, True, False, "warn"):
        errors.append(f"deterministic={args['deterministic']!r}: use True, False or 'warn'")
    max_time = None
    try:
        max_time = parse_max_time(args["max_time"])
    except ValueError as err:
        errors.append(str(err))
    workers = args["num_workers"]
    elastic = isinstance(workers, tuple) and len(workers) == 2 and 1 <= workers[0] <= workers[1]
    if not elastic and (not isinstance(workers, int) or workers < 0):
        errors.append(
            f"num_workers={workers!r}: must be 0 (run in this process), the number of Ray workers, or "
            "(min, max) for elastic training"
        )
    failures = args["max_failures"]
    if not isinstance(failures, int) or failures < -1:
        errors.append(f"max_failures={failures!r}: must be -1 (retry forever) or an int >= 0")
    root = args["default_root_dir"]
    if root is not None and not isinstance(root, str | os.PathLike):
        errors.append(f"default_root_dir={root!r}: must be a folder path (str or os.PathLike)")
    for flag in ("enable_checkpointing", "enable_progress_bar", "enable_model_summary"):
        if args[flag] not in (None, True, False):
            errors.append(f"{flag}={args[flag]!r}: must be True or False")
    errors += _check_callbacks(args["callbacks"]) + _check_loggers(args["logger"])
    workers, devices = args["num_workers"], args["devices"]
    if workers and not isinstance(args["strategy"], Strategy) and requested_devices(devices) > 1:
        errors.append(
            f"devices={devices!r} with num_workers={workers!r}: each Ray Train worker has one device, so these "
            f"disagree; pass only num_workers (the number of devices in all) and use_gpu=True for GPUs"
        )
    strategy = args["strategy"]
    problem = None if isinstance(strategy, Strategy) else strategy_problem(strategy)
    if problem:
        errors.append(problem)
    errors += _check_debugging_flags(args)
    device, num_workers, use_gpu = _place(args, errors)
    if fsdp_options(strategy) is not None and not (num_workers or args["scaling_config"] is not None):
        errors.append(
            f"strategy={strategy!r} without workers: FSDP shards the model over a process group, which lightray's "
            "Ray Train workers form; add num_workers=N (N >= 1, or Lightning's devices=N)"
        )
    if args["sync_batchnorm"] and (num_workers or args["scaling_config"] is not None) and not use_gpu:
        errors.append(
            "sync_batchnorm=True on CPU workers: torch's SyncBatchNorm works on CUDA devices only. Use GPU workers "
            "(use_gpu=True), or leave sync_batchnorm out (each worker then keeps its own BatchNorm statistics)"
        )
    if errors:
        listing = "\n".join(f"  - {e}" for e in errors)
        raise MisconfigurationError(f"Invalid Trainer arguments ({len(errors)}):\n{listing}")
    return Checked(max_time, device, num_workers, use_gpu)


def _check_debugging_flags(args: dict[str, Any]) -> list[str]:
    """``plugins``, ``overfit_batches`` and what ``barebones`` turns off (Lightning's rules)."""
    errors = []
    if args["plugins"] is not None:
        errors.append(
            f"plugins={args['plugins']!r}: lightray takes no plugins. Precision is precision='bf16-mixed' (or "
            "'16-mixed', '32-true'); the cluster environment and process group are Ray Train's; checkpoint I/O "
            "goes to storage_path (a folder or a pyarrow URI)"
        )
    overfit = args["overfit_batches"]
    if isinstance(overfit, bool) or not isinstance(overfit, int | float) or overfit < 0:
        errors.append(f"overfit_batches={overfit!r}: an int (batches) or a float in [0, 1] (a fraction)")
    elif isinstance(overfit, float) and overfit > 1:
        errors.append(f"overfit_batches={overfit}: a fraction must be at most 1.0; an int counts batches")
    if args["barebones"]:
        # asked for explicitly (True, a logger object, a number of fast-dev-run batches); logger=True is the default
        asked = {"enable_checkpointing": args["enable_checkpointing"] is True,
                 "logger": args["logger"] not in (None, True, False),
                 "enable_progress_bar": args["enable_progress_bar"] is True,
                 "enable_model_summary": args["enable_model_summary"] is True,
                 "detect_anomaly": args["detect_anomaly"] is True,
                 "fast_dev_run": args["fast_dev_run"] not in (False, 0)}  # fmt: skip
        errors += [
            f"barebones=True with {name}={args[name]!r}: barebones mode turns it off for raw speed; leave {name} "
            "out, or drop barebones"
            for name, explicit in asked.items()
            if explicit
        ]
        for name in ("log_every_n_steps", "num_sanity_val_steps"):
            if args[name] not in (None, 0):
                errors.append(f"barebones=True with {name}={args[name]!r}: barebones mode sets it to 0; leave it out")
    return errors


def _check_callbacks(callbacks: Any) -> list[str]:
    from lightray.callbacks.callback import Callback

    listed = callbacks if isinstance(callbacks, list | tuple) else [] if callbacks is None else [callbacks]
    return [
        f"callbacks[{i}]={cb!r}: not a Callback; subclass lightray.Callback (or pass one of lightray.callbacks)"
        for i, cb in enumerate(listed)
        if not isinstance(cb, Callback)
    ]


def _check_loggers(logger: Any) -> list[str]:
    if logger is None or isinstance(logger, bool):
        return []
    listed = logger if isinstance(logger, list | tuple) else [logger]
    return [
        f"logger={item!r}: not a logger; pass True (the default CSVLogger), False, a logger object such as "
        "lightray.loggers.CSVLogger(save_dir) or TensorBoardLogger(save_dir), or a list of them"
        for item in listed
        if isinstance(item, str | bytes) or not callable(getattr(item, "log_metrics", None))
    ]


def _place(args: dict[str, Any], errors: list[str]) -> tuple[torch.device, int | tuple[int, int], bool]:
    """The device of the in-process loop, and the Ray workers (num_workers, use_gpu), from Lightning's
    ``accelerator``/``devices``/``num_nodes`` and lightray's ``num_workers``/``use_gpu``/``strategy``."""
    num_workers, use_gpu, devices = args["num_workers"], args["use_gpu"], args["devices"]
    if isinstance(args["strategy"], Strategy):  # a Ray Train worker's: the device is the strategy's
        return args["strategy"].root_device, num_workers, use_gpu
    accelerator, num_nodes = args["accelerator"], args["num_nodes"]
    requested = requested_devices(devices) * (num_nodes if isinstance(num_nodes, int) else 1)
    if requested > 1 and num_workers == 0 and args["scaling_config"] is None:
        warnings.warn(
            f"devices={devices!r}, num_nodes={num_nodes}: lightray runs one Ray Train worker per device, so "
            f"this is num_workers={requested} (use_gpu={accelerator in ('gpu', 'cuda')}). Pass num_workers= "
            "to say so directly.",
            stacklevel=4,
        )
        num_workers, use_gpu, devices = requested, use_gpu or accelerator in ("gpu", "cuda"), 1
    on_ray = bool(num_workers) or args["scaling_config"] is not None
    device = torch.device("cpu")
    try:
        device = select_device("cpu" if on_ray else accelerator, devices)
    except ValueError as err:
        errors.append(str(err))
    if not on_ray and device.type == "cpu" and str(args["precision"]) in ("16-mixed", "16"):
        errors.append("precision='16-mixed' needs a GPU: fp16 autocast is not supported on the CPU; use 'bf16-mixed'")
    return device, num_workers, use_gpu


def check_fit(trainer: Trainer, model: LightningModule) -> None:
    """What ``Trainer.fit`` needs of the module and the Trainer's optimization settings."""
    from lightray.core.module import LightningModule
    from lightray.hooks import is_overridden

    name = type(model).__name__
    if not is_overridden(model, "training_step", LightningModule):
        raise MisconfigurationError(f"`{name}` has no `training_step(self, batch, batch_idx)`; define it to train.")
    if not is_overridden(model, "configure_optimizers", LightningModule):
        raise MisconfigurationError(
            f"`{name}` has no `configure_optimizers`. Define it and return an optimizer, "
            "e.g. `return torch.optim.Adam(self.parameters(), lr=1e-3)`."
        )
    if not model.automatic_optimization and trainer.gradient_clip_val:
        raise MisconfigurationError(
            f"`Trainer(gradient_clip_val={trainer.gradient_clip_val})` works with automatic optimization only. "
            "With `automatic_optimization = False`, call `self.clip_gradients(opt, gradient_clip_val=...)` "
            "in `training_step` before `opt.step()`, and remove `gradient_clip_val` from the Trainer."
        )
    if not model.automatic_optimization and trainer.accumulate_grad_batches != 1:
        raise MisconfigurationError(
            "`accumulate_grad_batches` works with automatic optimization only; with manual optimization "
            "step the optimizer every N batches yourself."
        )


def default_callbacks(trainer: Trainer, given: list[Callback], max_time: float | None) -> list[Callback]:
    """What Lightning adds by default: checkpointing, a progress bar, a model summary, a Timer for max_time."""
    from lightray import callbacks as cb

    def has(kind: type) -> bool:
        return any(isinstance(c, kind) for c in given)

    defaults: list[Callback] = []
    if max_time is not None and not has(cb.Timer):
        defaults.append(cb.Timer(duration=max_time))
    if trainer.enable_progress_bar and not has(cb.ProgressBar):
        defaults.append(cb.ProgressBar())
    if trainer.enable_model_summary and not has(cb.ModelSummary):
        defaults.append(cb.ModelSummary())
    if trainer.enable_checkpointing and not has(cb.ModelCheckpoint):
        defaults.append(cb.ModelCheckpoint())
    return defaults


def check_limit(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [f"{name}={value!r}: must be an int (batches) or a float in [0.0, 1.0] (a fraction)"]
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        return [f"{name}={value}: a float is a fraction and must be in [0.0, 1.0]; pass an int to count batches"]
    if isinstance(value, int) and value < 0:
        return [f"{name}={value}: must be >= 0"]
    return []


def parse_max_time(value: Any) -> float | None:
    from lightray.callbacks.timer import parse_duration

    return parse_duration(value, "max_time")


def requested_devices(devices: Any) -> int:
    if isinstance(devices, list | tuple):
        return len(devices)
    if isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()):
        return max(1, int(devices))
    return 1


def select_device(accelerator: str, devices: Any) -> torch.device:
    accelerator = str(accelerator).lower()
    if accelerator not in ("auto", "cpu", "gpu", "cuda"):
        raise ValueError(f"accelerator={accelerator!r}: use 'auto', 'cpu' or 'gpu'")
    want_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"accelerator={accelerator!r} but no CUDA GPU is visible; use 'cpu' or 'auto'")
    index = 0
    if isinstance(devices, list | tuple):
        if len(devices) != 1:
            raise ValueError(
                f"devices={devices!r}: a local Trainer uses one device; for several, use Ray workers "
                "(`Trainer(num_workers=N)`)"
            )
        index = int(devices[0])
    elif devices not in ("auto", 1, "1", -1, "-1") and not (want_gpu is False and devices in ("auto",)):
        if str(devices).isdigit() and int(devices) > 1:
            raise ValueError(
                f"devices={devices!r}: a local Trainer uses one device; for several, use Ray workers "
                "(`Trainer(num_workers=N)`)"
            )
        raise ValueError(f"devices={devices!r}: use 'auto', 1 or [index]")
    return torch.device("cuda", index) if want_gpu else torch.device("cpu")


def set_deterministic(warn_only: bool) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.benchmark = False


def make_loggers(logger: Any, root_dir: str) -> list[Any]:
    if logger is False or logger is None:
        return []
    if logger is True:
        return [default_logger(root_dir)]
    return list(logger) if isinstance(logger, Sequence) else [logger]


def default_logger(root_dir: str) -> Any:
    """Lightning's rule: TensorBoardLogger when ``tensorboard`` or ``tensorboardX`` is installed, else CSVLogger."""
    from lightray.loggers import CSVLogger, TensorBoardLogger

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        return TensorBoardLogger(root_dir)
    _say_csv_is_the_default()
    return CSVLogger(root_dir)


@functools.cache  # said once per process
def _say_csv_is_the_default() -> None:
    rank_zero_info(
        "lightray: logging to CSV (metrics.csv): TensorBoard is the default logger when `tensorboard` or "
        "`tensorboardX` is installed (pip install 'lightray[viz]'), as in Lightning."
    )

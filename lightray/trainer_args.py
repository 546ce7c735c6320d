"""Checks and conversions of Trainer arguments: limits, max_time, devices, default callbacks and loggers."""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from lightray.callbacks.callback import Callback
    from lightray.trainer import Trainer


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
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return datetime.timedelta(**value).total_seconds()
    if isinstance(value, str) and re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", value):
        days, hours, minutes, seconds = (int(p) for p in value.split(":"))
        return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
    raise ValueError(f"max_time={value!r}: use 'DD:HH:MM:SS', a datetime.timedelta or a dict like {{'hours': 1}}")


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
        from lightray.loggers import CSVLogger

        return [CSVLogger(root_dir)]
    return list(logger) if isinstance(logger, Sequence) else [logger]

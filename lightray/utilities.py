"""Small helpers shared across lightray."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch


class AttributeDict(dict):
    """A dict whose keys are also attributes: ``hparams.lr`` and ``hparams["lr"]``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(f"No hyperparameter named {key!r}; known: {sorted(self)}") from err

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]


def apply_to_tensors(data: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor in a nest of lists, tuples, dicts and dataclass-free containers."""
    if isinstance(data, torch.Tensor):
        return fn(data)
    if isinstance(data, Mapping):
        return type(data)({k: apply_to_tensors(v, fn) for k, v in data.items()})  # type: ignore[call-arg]
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(apply_to_tensors(v, fn) for v in data))
    if isinstance(data, Sequence) and not isinstance(data, str):
        return type(data)(apply_to_tensors(v, fn) for v in data)  # type: ignore[call-arg]
    return data


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of ``batch`` to ``device``; objects with a ``.to`` method are moved too."""

    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, non_blocking=device.type == "cuda")

    if hasattr(batch, "to") and not isinstance(batch, torch.Tensor | Mapping | Sequence):
        return batch.to(device)
    return apply_to_tensors(batch, move)


def infer_batch_size(batch: Any) -> int:
    """The size of the first dimension of the first tensor in ``batch`` (1 if there is none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, Mapping):
        for value in batch.values():
            return infer_batch_size(value)
    elif isinstance(batch, Sequence) and not isinstance(batch, str):
        for value in batch:
            return infer_batch_size(value)
    return 1


def collect_init_args(frame: types.FrameType | None, obj: object) -> dict[str, Any]:
    """Arguments of every ``__init__`` on the call stack that is building ``obj`` (subclass values win)."""
    collected: list[dict[str, Any]] = []
    while frame is not None:
        if frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is obj:
            info = inspect.getargvalues(frame)
            local_args = {name: info.locals[name] for name in info.args if name != "self"}
            if info.keywords:
                local_args.update(info.locals.get(info.keywords, {}))
            if info.varargs and info.locals.get(info.varargs):
                local_args[info.varargs] = info.locals[info.varargs]
            collected.append(local_args)
        frame = frame.f_back
    merged: dict[str, Any] = {}
    for args in reversed(collected):  # base classes first, the outermost subclass last
        merged.update(args)
    return merged

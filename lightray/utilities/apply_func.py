"""Functions over nests of tensors (batches): apply, move to a device, infer the batch size. Run anywhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch


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


move_data_to_device = move_to_device  # Lightning's name

"""Numeric precision: full 32-bit, or mixed with autocast (fp16 with a gradient scaler, or bf16)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16")


class Precision:
    """``32-true``: no autocast, no scaling."""

    name = "32-true"
    _no_context = contextlib.nullcontext()

    def forward_context(self) -> contextlib.AbstractContextManager:
        return self._no_context

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def optimizer_step(
        self, optimizer: Optimizer, closure: Callable[[], Any], after_closure: Callable[[], None], **kwargs: Any
    ) -> Any:
        def closure_then_hooks() -> Any:
            result = closure()
            after_closure()
            return result

        return optimizer.step(closure=closure_then_hooks, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class MixedPrecision(Precision):
    """Autocast to fp16 (with a GradScaler on CUDA) or bf16 (no scaler needed; works on the CPU)."""

    def __init__(self, name: str, device_type: str) -> None:
        self.name = name
        self.dtype = torch.bfloat16 if name.startswith("bf16") else torch.float16
        self.device_type = device_type
        use_scaler = self.dtype == torch.float16 and device_type == "cuda"
        self.scaler = torch.amp.GradScaler(device_type) if use_scaler else None

    def forward_context(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def optimizer_step(
        self, optimizer: Optimizer, closure: Callable[[], Any], after_closure: Callable[[], None], **kwargs: Any
    ) -> Any:
        if self.scaler is None:
            return super().optimizer_step(optimizer, closure, after_closure, **kwargs)
        # A scaler cannot step with a closure: run it first, unscale so hooks and clipping see real gradients.
        result = closure()
        self.scaler.unscale_(optimizer)
        after_closure()
        output = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        return output if output is not None else result

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def make_precision(name: str, device_type: str) -> Precision:
    """The precision object for a Trainer ``precision`` value (already validated)."""
    name = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}.get(name, name)
    if name == "32-true":
        return Precision()
    return MixedPrecision(name, device_type)

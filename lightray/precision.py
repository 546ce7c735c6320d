"""Numeric precision: full 32-bit; mixed with autocast (fp16 with a gradient scaler, or bf16); or "true" 64, 16 or
bf16 (the module's parameters and the batches' floating-point tensors in that dtype)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.optim import Optimizer

PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "64-true", "64", "16-true", "bf16-true")


class Precision:
    """``32-true``: no autocast, no scaling."""

    name = "32-true"
    _no_context = contextlib.nullcontext()

    def forward_context(self) -> contextlib.AbstractContextManager:
        return self._no_context

    def convert_module(self, module: torch.nn.Module) -> None:
        """Put the module's parameters and buffers in this precision's dtype (in place), before optimizers exist."""

    def module_init_context(self) -> contextlib.AbstractContextManager:
        """Where a module built under ``Trainer.init_module()`` gets its parameters' dtype."""
        return self._no_context

    def convert_input(self, batch: Any) -> Any:
        """The batch with its floating-point tensors in this precision's dtype (before the batch-transfer hooks)."""
        return batch

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


class TruePrecision(Precision):
    """``64-true``, ``16-true``, ``bf16-true``: the module and the inputs in one dtype, which is also the default
    dtype while a step runs (tensors created there match), as Lightning's double and half precisions do."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = {"64-true": torch.float64, "16-true": torch.float16, "bf16-true": torch.bfloat16}[name]

    @contextlib.contextmanager
    def forward_context(self) -> Iterator[None]:
        default = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(default)

    def convert_module(self, module: torch.nn.Module) -> None:
        module.to(dtype=self.dtype)

    def module_init_context(self) -> contextlib.AbstractContextManager:
        return self.forward_context()

    def convert_input(self, batch: Any) -> Any:
        from lightray.utilities.apply_func import apply_to_tensors

        return apply_to_tensors(batch, lambda t: t.to(self.dtype) if t.is_floating_point() else t)


def make_precision(name: str, device_type: str) -> Precision:
    """The precision object for a Trainer ``precision`` value (already validated)."""
    name = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}.get(name, name)
    if name == "32-true":
        return Precision()
    if name.endswith("-true"):
        return TruePrecision(name)
    return MixedPrecision(name, device_type)

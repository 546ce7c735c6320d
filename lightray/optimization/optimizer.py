"""``LightningOptimizer``: the optimizer users see, whose ``step`` runs Lightning's hooks, precision and clipping."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch.optim import Optimizer

if TYPE_CHECKING:
    from lightray.optimization.step import Optimization


class LightningOptimizer:
    """Wraps a torch optimizer so ``step`` goes through the loop's optimization step.

    Every attribute not defined here is the wrapped optimizer's, so user code sees a normal optimizer.
    """

    def __init__(self, optimizer: Optimizer, optimization: Optimization) -> None:
        self._optimizer = optimizer
        self._optimization = optimization

    @property
    def optimizer(self) -> Optimizer:
        return self._optimizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._optimizer, name)

    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        """Step the optimizer; ``closure`` (automatic optimization) runs the forward and backward pass."""
        return self._optimization.optimizer_step(self._optimizer, closure, **kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def __repr__(self) -> str:
        return f"LightningOptimizer({self._optimizer!r})"

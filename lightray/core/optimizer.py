"""``LightningOptimizer`` at Lightning's import path; it lives with the optimization step in
:mod:`lightray.optimization`."""

from lightray.optimization.optimizer import LightningOptimizer

__all__ = ["LightningOptimizer"]

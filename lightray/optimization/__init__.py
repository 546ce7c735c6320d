"""Optimization: ``configure_optimizers``' forms (``configure``), ``LightningOptimizer`` (``optimizer``) and the
training step's optimization (``step``: automatic and manual, backward, optimizer and scheduler stepping)."""

from lightray.optimization.configure import LRSchedulerConfig, parse_optimizers
from lightray.optimization.optimizer import LightningOptimizer

__all__ = ["LRSchedulerConfig", "LightningOptimizer", "parse_optimizers"]

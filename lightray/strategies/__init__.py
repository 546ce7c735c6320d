"""Strategies: how the one loop maps onto processes and devices."""

from lightray.strategies.ddp import DDPStrategy
from lightray.strategies.fsdp import FSDPStrategy
from lightray.strategies.strategy import SingleDeviceStrategy, Strategy

__all__ = ["DDPStrategy", "FSDPStrategy", "SingleDeviceStrategy", "Strategy"]

"""Strategies: how the one loop maps onto processes and devices."""

from lightray.strategies.strategy import SingleDeviceStrategy, Strategy

__all__ = ["SingleDeviceStrategy", "Strategy"]

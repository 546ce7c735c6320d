"""Callbacks: code that hooks into the loop from outside the module."""

from lightray.callbacks.callback import Callback

__all__ = ["Callback"]

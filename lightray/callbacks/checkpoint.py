"""``Checkpoint``: the base of callbacks that save checkpoints (Lightning's name); the Trainer runs them last."""

from lightray.callbacks.callback import Callback


class Checkpoint(Callback):
    """A callback that saves checkpoints: ``trainer.checkpoint_callbacks`` lists these, and they run after the
    other callbacks so they see what those did."""

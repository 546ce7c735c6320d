"""LightningDataModule: the data side of a training program, kept apart from the model."""

from __future__ import annotations

from typing import Any

from lightray.hooks import DataHooks
from lightray.utilities.parsing import AttributeDict, collect_init_args


class LightningDataModule(DataHooks):
    """Groups ``prepare_data``, ``setup`` and the ``*_dataloader`` methods of one data set.

    Built on the driver. ``prepare_data`` runs once per node, the other hooks on every training
    process (every Ray Train worker when the Trainer runs on Ray).
    """

    name: str | None = None

    def __init__(self) -> None:
        self.trainer: Any = None
        self._hparams: AttributeDict = AttributeDict()

    @property
    def hparams(self) -> AttributeDict:
        return self._hparams

    def save_hyperparameters(self, *args: Any, ignore: Any = None, logger: bool = True) -> None:
        """Save ``__init__`` arguments to ``self.hparams`` (they go into checkpoints)."""
        import inspect

        frame = inspect.currentframe()
        values = collect_init_args(frame.f_back if frame else None, self)
        ignored = {ignore} if isinstance(ignore, str) else set(ignore or ())
        names = args or tuple(values)
        self._hparams.update({k: values[k] for k in names if k in values and k not in ignored})

    def state_dict(self) -> dict[str, Any]:
        """State to keep in checkpoints (for example a data position); empty by default."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def on_exception(self, exception: BaseException) -> None:
        """Called when fit, validate, test or predict raises."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["trainer"] = None
        return state

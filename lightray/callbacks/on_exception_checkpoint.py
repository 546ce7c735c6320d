"""OnExceptionCheckpoint: save a checkpoint when fit raises, to resume from later."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lightray import storage
from lightray.callbacks.callback import Callback

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class OnExceptionCheckpoint(Callback):
    """Writes ``<dirpath>/<filename>.ckpt`` from ``on_exception`` (e.g. a KeyboardInterrupt)."""

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str | os.PathLike, filename: str = "on_exception") -> None:
        self.dirpath = os.fspath(dirpath)
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        return storage.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.state.fn == "fit" and trainer.optimizers:
            trainer.save_checkpoint(self.ckpt_path)

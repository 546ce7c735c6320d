"""What the ``lightray`` stages and ``lightray tune`` share: the usage error, the saved config, the Trainer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightray.callbacks.callback import Callback

if TYPE_CHECKING:
    from jsonargparse import Namespace

    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class UsageError(Exception):
    """Bad command-line input; the message lists the problems and the valid choices."""


def listing(problems: list[str]) -> str:
    """One problem as it is; several as a count and a bulleted list (the message of a :class:`UsageError`)."""
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


def make_trainer(options: Namespace, config_text: str, *extra: Callback) -> Trainer:
    """The Trainer of the parsed ``trainer`` options, saving ``config_text`` beside its logs, with ``extra``
    callbacks last."""
    from lightray.trainer import Trainer

    kwargs = dict(vars(options))  # the trainer's options, with callbacks and loggers already instantiated
    given = kwargs.pop("callbacks") or []
    callbacks = [*(given if isinstance(given, list) else [given]), SaveConfig(config_text), *extra]
    return Trainer(**kwargs, callbacks=callbacks)


def save_config(folder: str, config: str, filename: str = "config.yaml") -> None:
    """Write the resolved ``config`` as ``<folder>/<filename>`` (a path or a URI), atomically."""
    from lightray import storage

    def write(target: Any) -> None:
        data = config.encode()
        if isinstance(target, str):
            with open(target, "wb") as f:
                f.write(data)
        else:
            target.write(data)

    storage.makedirs(folder)
    storage.write_atomic(storage.join(folder, filename), write)


class SaveConfig(Callback):
    """Writes the resolved config as ``config.yaml`` beside the logs and, under Ray, beside the checkpoints.

    ``setup`` runs where the loop runs (in-process, or on each Ray Train worker); global rank 0 writes.
    """

    def __init__(self, config: str, filename: str = "config.yaml") -> None:
        self.config, self.filename = config, filename

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        folders = {trainer.log_dir}
        run_dir = getattr(trainer.strategy, "run_dir", None)  # <storage_path>/<name> on Ray Train workers
        if run_dir:
            folders.add(run_dir)
        for folder in folders:
            save_config(folder, self.config, self.filename)

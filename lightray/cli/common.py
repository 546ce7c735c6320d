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


def make_trainer(options: Namespace, config_text: str, *extra: Callback, save: dict[str, Any] | None = None) -> Trainer:
    """The Trainer of the parsed ``trainer`` options, saving ``config_text`` beside its logs (``save``: SaveConfig's
    options; ``{"enabled": False}`` saves nothing), with ``extra`` callbacks last."""
    from lightray.trainer import Trainer

    kwargs = dict(vars(options))  # the trainer's options, with callbacks and loggers already instantiated
    given = kwargs.pop("callbacks") or []
    save = dict(save or {})
    saver = [SaveConfig(config_text, **save)] if save.pop("enabled", True) else []
    callbacks = [*(given if isinstance(given, list) else [given]), *saver, *extra]
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

    def __init__(self, config: str, filename: str = "config.yaml", overwrite: bool = True) -> None:
        self.config, self.filename, self.overwrite = config, filename, overwrite

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        from lightray import storage

        if not self.overwrite and storage.exists(storage.join(trainer.log_dir, self.filename)):
            raise RuntimeError(
                f"{self.filename} already exists in {trainer.log_dir}: not overwriting the config of a previous run. "
                "Delete it, pass `LightningCLI(save_config_callback=None)` to save no config, or "
                '`LightningCLI(save_config_kwargs={"overwrite": True})` to overwrite it.'
            )
        folders = {trainer.log_dir}
        run_dir = getattr(trainer.strategy, "run_dir", None)  # <storage_path>/<name> on Ray Train workers
        if run_dir:
            folders.add(run_dir)
        for folder in folders:
            save_config(folder, self.config, self.filename)

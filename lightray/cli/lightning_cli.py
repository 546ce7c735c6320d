"""``LightningCLI``: Lightning's command-line entry point for a script's own ``main``, on lightray's command.

    # main.py
    from lightray.cli import LightningCLI
    from mymodels import LitModel, LitData

    if __name__ == "__main__":
        LightningCLI(LitModel, LitData)

    python main.py fit --trainer.max_epochs 5 --model.lr 0.01 --config run.yaml

The classes given become the defaults of ``--model`` and ``--data`` (a ``--config`` file or ``--model`` on the
command line still wins); every other option is ``lightray fit``'s. Runs on the driver.
"""

from __future__ import annotations

import sys
from typing import Any

from lightray.cli.common import UsageError

STAGES = ("fit", "validate", "test", "predict")


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class LightningCLI:
    """Parse ``args`` (default ``sys.argv[1:]``: ``<fit|validate|test|predict> [options]``) with ``model_class`` and
    ``datamodule_class`` as the defaults, build the Trainer, model and data, and run the subcommand (``run=True``).

    With ``run=False`` there is no subcommand: the options are ``fit``'s, and ``cli.trainer``, ``cli.model`` and
    ``cli.datamodule`` are built for the script to use. ``trainer_defaults`` (``{"max_epochs": 3}``) and
    ``seed_everything_default`` replace the defaults; the resolved config is saved beside the logs as in Lightning
    (``save_config_callback=None`` saves none, ``save_config_kwargs={"overwrite": True}`` replaces an existing
    one). Runs on the driver.
    """

    def __init__(
        self,
        model_class: type | None = None,
        datamodule_class: type | None = None,
        args: list[str] | None = None,
        run: bool = True,
        trainer_defaults: dict[str, Any] | None = None,
        seed_everything_default: bool | int = True,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        save_config_callback: Any = True,
        save_config_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from lightray.cli import run as run_stage

        argv = list(sys.argv[1:] if args is None else args)
        save = save_options(save_config_callback, save_config_kwargs)
        trainer_defaults = dict(trainer_defaults or {})
        # callbacks in trainer_defaults join those of the config (not parsed: instances, as Lightning takes them)
        extra = trainer_defaults.pop("callbacks", None) or []
        extra = list(extra) if isinstance(extra, list | tuple) else [extra]
        defaults: dict[str, Any] = {f"trainer.{key}": value for key, value in trainer_defaults.items()}
        defaults["seed_everything"] = seed_everything_default
        given = [*(["--model", class_path(model_class)] if model_class else []),
                 *(["--data", class_path(datamodule_class)] if datamodule_class else [])]  # fmt: skip
        self.subcommand = argv[0] if run and argv else None
        if run:
            if self.subcommand not in STAGES:
                raise UsageError(
                    f"{sys.argv[0] if args is None else 'LightningCLI'}: give a subcommand first: one of "
                    f"{', '.join(STAGES)} (e.g. `fit --trainer.max_epochs 5`)"
                )
            self.result = run_stage([argv[0], *given, *argv[1:]], defaults=defaults, save=save, callbacks=extra)
            return
        self.trainer, self.model, self.datamodule = _build(["fit", *given, *argv], defaults, save, extra)


def save_options(save_config_callback: Any, save_config_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Lightning's ``save_config_callback``/``save_config_kwargs`` as the saved config's options: None saves
    nothing; ``config_filename`` and ``overwrite`` (default False: an existing config.yaml stops the run)."""
    if save_config_callback is None or save_config_callback is False:
        return {"enabled": False}
    kwargs = dict(save_config_kwargs or {})
    unknown = sorted(set(kwargs) - {"config_filename", "overwrite"})
    if unknown:
        raise UsageError(
            f"LightningCLI(save_config_kwargs=...): lightray supports 'config_filename' and 'overwrite', not {unknown}."
        )
    return {"filename": kwargs.get("config_filename", "config.yaml"), "overwrite": bool(kwargs.get("overwrite"))}


def _build(
    argv: list[str], defaults: dict[str, Any], save: dict[str, Any], callbacks: list[Any]
) -> tuple[Any, Any, Any]:
    """The Trainer, module and datamodule of ``fit``'s options, not run (``LightningCLI(run=False)``)."""
    from lightray.cli import build_parser
    from lightray.cli.common import make_trainer

    stage_parser = build_parser()[1]["fit"]
    stage_parser.set_defaults(defaults)
    config = stage_parser.parse_args(argv[1:])
    if config.seed_everything is not False:
        from lightray.seed import seed_everything

        seed = config.seed_everything
        seed_everything(None if seed is True else int(seed))
    objects = stage_parser.instantiate(config)
    trainer = make_trainer(objects.trainer, stage_parser.dump(config, skip_unset=False), *callbacks, save=save)
    return trainer, objects.model, objects.data

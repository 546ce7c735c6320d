"""The ``lightray`` command: run a Trainer stage from class paths, YAML files and dotted overrides.

    lightray fit --model mypkg.LitModel --data mypkg.DigitsData --config run.yaml --trainer.max_epochs 5
    lightray fit --config run.yaml --model.lr 0.01 --trainer.num_workers 4   # --model.init_args.lr works too
    lightray fit --config run.yaml --print-config                            # the resolved config, then exit
    lightray validate | test | predict --config run.yaml --ckpt_path last
    lightray submit -- lightray fit --config run.yaml                        # ray job submit, upload guarded
    lightray tune --config run.yaml --tune.metric val_loss --tune.num_samples 8 --tune.scheduler asha \
        --search_space.model.lr 'loguniform(1e-4, 1e-1)' --search_space.data.batch_size 'choice([32, 64])'

Everything here runs on the driver (a laptop, or the entrypoint of a Ray job). The options follow
LightningCLI's conventions, parsed by jsonargparse: ``--config`` files merge left to right, later
options win, and ``--trainer.callbacks+=lightray.callbacks.EarlyStopping`` appends. The resolved config is
saved as ``config.yaml`` beside the logs (the logger's folder) and, under Ray, beside the checkpoints
(``<storage_path>/<name>/``): ``lightray fit --config <that file>`` reruns the run, and with a ``name`` it
resumes it. Bad input ends with one message that lists every problem and the valid choices.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import random
import re
import sys
import traceback
from typing import TYPE_CHECKING, Any

from lightray.checkpoint import CheckpointError
from lightray.cli.common import UsageError, listing, make_trainer
from lightray.cli.lightning_cli import LightningCLI
from lightray.cli.search_space import add_search_arguments, check_search, pop_search_space
from lightray.core.datamodule import LightningDataModule
from lightray.core.module import LightningModule
from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from jsonargparse import ArgumentParser

    from lightray.callbacks.callback import Callback

__all__ = ["LightningCLI", "main", "run"]

STAGES = ("fit", "validate", "test", "predict")
# `lightray --help`: each command, what it does, an example
COMMANDS = [
    ("fit", "train a model: Trainer.fit",
     "lightray fit --model examples.digits.DigitsCNN --data examples.digits.DigitsData --trainer.max_epochs 5"),
    ("validate", "one validation pass: Trainer.validate",
     "lightray validate --config lightning_logs/version_0/config.yaml --ckpt_path last"),
    ("test", "one test pass: Trainer.test", "lightray test --config run.yaml --ckpt_path best"),
    ("predict", "predictions: Trainer.predict", "lightray predict --config run.yaml --ckpt_path last"),
    ("tune", "a Ray Tune search of fit runs",
     "lightray tune --config run.yaml --tune.metric val_loss --search_space.model.lr 'loguniform(1e-4, 1e-1)'"),
    ("submit", "run a command as a Ray job (ray job submit), the upload guarded",
     "lightray submit -- lightray fit --config examples/configs/digits.yaml --trainer.num_workers 4"),
    ("plot", "a PNG of a run's learning curves (metrics.csv or event files; needs matplotlib)",
     "lightray plot lightning_logs/version_0"),
    ("consolidate", "one Lightning-format file from a sharded (FSDP) checkpoint folder",
     "lightray consolidate runs/my-run/epoch=1-step=40.ckpt model.ckpt"),
]  # fmt: skip


def help_text() -> str:
    """The top-level help: a list of the commands, each with one line and an example."""
    lines = ["usage: lightray <command> [options]    (lightray <command> --help: its options)", "", "commands:"]
    for name, what, example in COMMANDS:
        lines += [f"  {name:<9} {what}", f"            {example}"]
    lines += [
        "",
        "Every command runs on the driver (a laptop, or a Ray job's entrypoint). Options follow LightningCLI:",
        "--config files merge left to right, later options win, --print-config shows the resolved config.",
        "lightray --version: the installed version.",
    ]
    return "\n".join(lines)


# Trainer arguments that take Ray objects: the command line uses their shortcuts (num_workers, use_gpu, ...)
_SKIPPED_TRAINER_ARGS = {"logger", "scaling_config", "run_config"}


# ====================================================================== entry point
def main(argv: list[str] | None = None) -> int:
    """The console script ``lightray``; runs on the driver. Returns the exit status (2: bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # like `python -m`: modules in the current folder can be named by class path (mymodels.LitModel)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    command = argv[0] if argv else ""
    if command in ("", "-h", "--help"):
        print(help_text(), file=sys.stdout if command else sys.stderr)
        return 0 if command else 2
    if command in ("--version", "-V"):
        from lightray import __version__

        print(f"lightray {__version__}")
        return 0
    try:
        if command == "submit":
            from lightray.jobs import submit_main

            return submit_main(argv[1:])
        if command == "plot":
            from lightray.cli.plot_command import plot_main

            return plot_main(argv[1:])
        if command == "consolidate":
            return consolidate_main(argv[1:])
        run(argv)
    except (UsageError, MisconfigurationError, CheckpointError) as err:
        print(f"{' '.join(['lightray', command]).strip()}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # not a known kind of bad input: the traceback, then one line saying what it was
        traceback.print_exc()
        print(f"{' '.join(['lightray', command]).strip()}: unexpected error: {type(err).__name__}: {err} (traceback "
              "above)", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def run(
    argv: list[str],
    defaults: dict[str, Any] | None = None,
    save: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
) -> Any:
    """Parse ``argv`` (``<stage> [options]``), build the Trainer, module and data, and run the stage. Driver.

    Returns what the stage returns (``validate``/``test`` metrics, ``predict`` outputs; for ``tune``, Ray's
    ``ResultGrid``); ``--print-config`` prints the resolved config and returns None without building anything.
    ``defaults`` (dotted keys: ``{"trainer.max_epochs": 3}``) replace the parser's defaults, below every option;
    ``save`` holds the saved config's options (see ``make_trainer``), ``callbacks`` join the config's.
    """
    from jsonargparse import ArgumentError

    from lightray.cli import tune_command

    print_config = any(arg in ("--print-config", "--print_config") for arg in argv)
    argv = [arg for arg in argv if arg not in ("--print-config", "--print_config")]
    _check_config_files(argv)
    argv, search_space = pop_search_space(argv) if argv[:1] == ["tune"] else (argv, {})
    parser, stage_parsers = build_parser()
    for stage_parser in stage_parsers.values():
        stage_parser.set_defaults(defaults or {})
    try:
        config = parser.parse_args(argv)
    except ArgumentError as err:
        # the valid options of the stage that was asked for (all stages' when none was)
        asked = {argv[0]: stage_parsers[argv[0]]} if argv and argv[0] in stage_parsers else stage_parsers
        raise UsageError(explain(str(err), asked)) from None
    stage = config.subcommand
    stage_config = config[stage]
    seed = stage_config.seed_everything
    if seed is True:  # as LightningCLI: a random seed, written into the saved config so the run can be repeated
        stage_config.seed_everything = seed = random.randint(0, 2**32 - 1)
    text = stage_parsers[stage].dump(stage_config, skip_unset=False)
    if stage == "tune":
        text = check_search(text, search_space)
    if print_config:
        print(text, end="")
        return None
    if stage == "tune":
        return tune_command.tune(text)
    if seed is not False:
        from lightray.seed import seed_everything

        seed_everything(int(seed))
    objects = stage_parsers[stage].instantiate(stage_config)
    trainer = make_trainer(objects.trainer, text, *callbacks, save=save)
    kwargs: dict[str, Any] = {"datamodule": objects.data, "ckpt_path": objects.ckpt_path}
    return getattr(trainer, stage)(objects.model, **kwargs)


def consolidate_main(argv: list[str]) -> int:
    """``lightray consolidate <checkpoint folder> <file>`` (driver)."""
    import argparse

    from lightray.strategies.fsdp import consolidate

    parser = argparse.ArgumentParser(
        prog="lightray consolidate",
        description="Write one Lightning-format checkpoint file (full weights, optimizer state, loop and callback "
        "state) from a sharded FSDP checkpoint folder; LightningModule.load_from_checkpoint opens it anywhere.",
    )
    parser.add_argument("folder", help="a sharded checkpoint folder of a run (<storage_path>/<name>/<...>.ckpt)")
    parser.add_argument("out", help="the file to write")
    args = parser.parse_args(argv)
    print(f"wrote {consolidate(args.folder, args.out)}")
    return 0


# ====================================================================== the parser
def build_parser() -> tuple[ArgumentParser, dict[str, ArgumentParser]]:
    """The ``lightray`` parser and one sub-parser per stage. Driver."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from lightray.loggers.logger import Logger
    from lightray.trainer import Trainer

    parser = ArgumentParser(prog="lightray", description=__doc__, exit_on_error=False, allow_abbrev=False)
    subcommands = parser.add_subcommands(required=True, dest="subcommand")
    stage_parsers = {}
    for stage in (*STAGES, "tune"):
        sub = ArgumentParser(prog=f"lightray {stage}", exit_on_error=False, allow_abbrev=False)
        sub.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML config file (several merge in order)")
        sub.add_argument(
            "--seed_everything",
            type=bool | int,
            default=True,
            help="seed for python, numpy and torch; true: a random one (saved in the config); false: no seeding",
        )
        sub.add_class_arguments(Trainer, "trainer", instantiate=False, skip=_SKIPPED_TRAINER_ARGS)
        sub.add_argument(
            "--trainer.logger",
            type=bool | Logger | list[Logger] | None,
            default=True,
            help="true: CSVLogger; false: none; or a logger class path such as lightray.loggers.TensorBoardLogger",
        )
        sub.add_subclass_arguments(LightningModule, "model", required=True, help="the LightningModule's class path")
        sub.add_subclass_arguments(
            LightningDataModule, "data", required=False, help="the LightningDataModule's class path"
        )
        # in `tune` only so that every config `lightray fit` writes or prints is accepted: a search's trials start
        # from scratch or from the checkpoints Tune gives them (PBT, restore), so a path there is an error
        sub.add_argument("--ckpt_path", type=str | None, default=None, help='"last", "best" or a checkpoint path')
        if stage == "tune":
            add_search_arguments(sub)
        subcommands.add_subcommand(
            stage, sub, help="a Ray Tune search of Trainer.fit runs" if stage == "tune" else f"Trainer.{stage}"
        )
        stage_parsers[stage] = sub
    return parser, stage_parsers


def _check_config_files(argv: list[str]) -> None:
    """Name the file and the YAML problem before jsonargparse would report it without the file's name."""
    import yaml

    problems = []
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            continue
        if not os.path.isfile(path):
            problems.append(f"--config {path}: no such file")
            continue
        try:
            with open(path) as f:
                content = yaml.safe_load(f)
        except yaml.YAMLError as err:
            problems.append(f"--config {path}: not valid YAML: {' '.join(str(err).split())}")
            continue
        if not isinstance(content, dict | None):
            problems.append(
                f"--config {path}: expected a mapping of options (trainer:, model:, data:, ...), "
                f"got a {type(content).__name__}"
            )
    if problems:
        raise UsageError(listing(problems))


# ====================================================================== error messages
def explain(message: str, stage_parsers: dict[str, ArgumentParser]) -> str:
    """jsonargparse's error ``message`` as a list of the problems, each with the valid choices. Driver."""
    unknown = re.findall(r"(?:does not accept option|unrecognized arguments?:?)\s+'?([^'\n]+)'?", message)
    if unknown:
        keys = [a.lstrip("-").split("=")[0] for part in unknown for a in part.split() if a.startswith("-")]
        keys = keys or [part.strip().lstrip("-") for part in unknown]
        return listing([_unknown_option(key, stage_parsers) for key in keys])
    key_match = re.match(r'Parser key "([^"]+)":', message)
    key = key_match.group(1) if key_match else None
    if key in ("model", "data"):
        return listing([_class_problem(key, message)])
    if "required" in message and "model" in message:
        return listing(["--model is required: give a LightningModule class path, e.g. --model mypkg.LitModel"])
    if key is not None:
        given = _given_value(message)
        details = "; ".join(_inner_errors(message))
        return listing([f"--{key}: {given!r} is not accepted ({details})" if given else f"--{key}: {details}"])
    return listing([" ".join(_inner_errors(message)) or message.strip()])


def _unknown_option(key: str, stage_parsers: dict[str, ArgumentParser]) -> str:
    group = key.split(".")[0] if "." in key else ""
    defaults = [p.get_defaults() for p in stage_parsers.values()]
    options = sorted({k for d in defaults for k in d.keys() if k != "config"})  # noqa: SIM118 (a Namespace, not a dict)
    options = [k for k in options if (k.startswith(group + ".") if group else "." not in k)]
    if not group:
        options += ["config", "print-config", "trainer.<option>", "model.<init argument>", "data.<init argument>"]
    close = difflib.get_close_matches(key, options, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join('--' + c for c in close)}?" if close else ""
    scope = f"--{group} options" if group else "options"
    return f"unknown option --{key}.{hint} Valid {scope}: {', '.join('--' + o for o in options)}"


def _class_problem(key: str, message: str) -> str:
    """Why the class path given for --model / --data does not work, with the classes that would."""
    base = LightningModule if key == "model" else LightningDataModule
    paths = re.findall(r"class_path '([^']+)'", message) or [_given_value(message)]
    class_path = next((p for p in paths if p), None)
    problem = _class_path_problem(class_path, base) if class_path else None
    if problem:
        return f"--{key} {class_path}: {problem}"
    if class_path is None:
        return f"--{key}: {'; '.join(_inner_errors(message))}"
    cls = _import_class(class_path)
    inner = "; ".join(_inner_errors(message))
    if "not accepted" not in inner:
        return f"--{key} {class_path}: {inner}"
    accepted = [name for name in inspect.signature(cls).parameters if name not in ("args", "kwargs")]
    return f"--{key} {class_path}: {inner}. {cls.__name__} accepts: {', '.join(accepted) or '(no arguments)'}"


def _class_path_problem(class_path: str, base: type) -> str | None:
    """What is wrong with ``class_path`` as a subclass of ``base``, with the valid choices; None if nothing."""
    kind = base.__name__
    if "." not in class_path:
        known = _known_subclasses(base, class_path) or _known_subclasses(base)
        return f"not a class path (module.Class). {_choices(kind, known)}"
    module_name, _, name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return (
            f"cannot import module {module_name!r} ({err}). The module must be installed or sit in the current "
            f"folder. {_choices(kind, _known_subclasses(base))}"
        )
    in_module = [
        f"{module_name}.{n}"
        for n, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base
    ]
    obj = getattr(module, name, None)
    if obj is None:
        return f"module {module_name!r} has no {name!r}. {_choices(kind, in_module or _known_subclasses(base))}"
    if not (inspect.isclass(obj) and issubclass(obj, base)):
        bases = [
            b.__name__ for b in (LightningModule, LightningDataModule) if inspect.isclass(obj) and issubclass(obj, b)
        ]
        what = bases[0] if bases else ("class" if inspect.isclass(obj) else type(obj).__name__)
        return f"this is a {what}, not a {kind}. {_choices(kind, in_module or _known_subclasses(base))}"
    return None


def _import_class(class_path: str) -> type:
    module_name, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def _known_subclasses(base: type, name: str | None = None) -> list[str]:
    """Subclasses of ``base`` imported so far (those called ``name`` only, when given)."""
    found: set[str] = set()
    todo: list[type] = list(base.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__ != "__main__" and (name is None or cls.__name__ == name):
            found.add(f"{cls.__module__}.{cls.__qualname__}")
    return sorted(found)


def _choices(kind: str, paths: list[str]) -> str:
    if not paths:
        return f"Give the full path of a {kind} subclass, e.g. mypkg.models.LitModel."
    return f"Valid choices: {', '.join(paths)}."


def _given_value(message: str) -> str | None:
    match = re.search(r"Given value: (.+)", message)
    return match.group(1).strip() if match else None


def _inner_errors(message: str) -> list[str]:
    """The lines of a jsonargparse message that say what is wrong, without the type-union bookkeeping."""
    noise = (
        "Parser key",
        "Does not validate against any of the Union subtypes",
        "Subtypes:",
        "Errors:",
        "expected NoneType",
        "Given value",
        "Expected a path but",
        "Problem with given class_path",
    )
    lines = [
        re.sub(r"Expected a <class '([\w.]+)'>", r"expected \1", line).strip(" -") for line in message.splitlines()
    ]
    return [line for line in lines if line and not line.startswith(noise)]

"""``lightray tune``'s options and search space: the ``--tune.*`` and ``--search_space.<key>`` arguments, the domain
expressions (``loguniform(1e-4, 1e-1)``), and the checks that collect every problem before a search starts.

Runs on the driver, except :func:`parse_domain` (anywhere).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lightray.cli.common import UsageError, listing

if TYPE_CHECKING:
    from jsonargparse import ArgumentParser

SCHEDULERS = ("fifo", "asha", "pbt")
# Ray Tune's search algorithms by name: random/grid sampling (Tune's default), and two that learn from the trials
SEARCH_ALGS = {"random": None, "optuna": "optuna", "hyperopt": "hyperopt"}  # name -> the package it needs

# Trainer options that every trial shares: they decide the trials' resources and where things go.
_FIXED_IN_A_SEARCH = {
    "num_workers",
    "use_gpu",
    "resources_per_worker",
    "placement_strategy",
    "callbacks",
    "logger",
    "default_root_dir",
    "storage_path",
    "name",
    "max_failures",
}
# the Ray Tune search-space functions a domain expression may call, and how: ``choice([32, 64])``
DOMAINS = {
    "uniform": "uniform(low, high)",
    "loguniform": "loguniform(low, high) (0 < low)",
    "randint": "randint(low, high) (integers; high excluded)",
    "choice": "choice([a, b, ...])",
    "grid_search": "grid_search([a, b, ...])",
}


def add_search_arguments(parser: ArgumentParser) -> None:
    """``--tune.*`` (the search) and ``--search_space.<key>`` (the sampled values) of ``lightray tune``."""
    from typing import Any as AnyValue

    add = parser.add_argument
    add("--tune.metric", type=str | None, default=None, help="the logged metric to optimize, e.g. val_loss")
    add("--tune.mode", type=str, default="min", help="min or max")
    add("--tune.num_samples", type=int, default=1, help="trials to sample (each grid_search point that many times)")
    add("--tune.scheduler", type=str, default="fifo", help="fifo (run all), asha (stop bad trials early) or pbt")
    add(
        "--tune.scheduler_args",
        type=dict[str, AnyValue],
        default={},
        help="keyword arguments of the Ray Tune scheduler, e.g. {grace_period: 2, reduction_factor: 3}",
    )
    add(
        "--tune.search_alg",
        type=str,
        default="random",
        help="random (Tune's default: grid and random sampling), optuna or hyperopt (pip install 'lightray[search]')",
    )
    add(
        "--tune.search_alg_args",
        type=dict[str, AnyValue],
        default={},
        help="keyword arguments of the Ray Tune search algorithm, e.g. {seed: 0}",
    )
    add("--tune.max_concurrent_trials", type=int | None, default=None, help="at most this many trials at once")
    add("--tune.cpus_per_trial", type=float, default=1.0, help="CPUs of a trial that trains in-process")
    add("--tune.gpus_per_trial", type=float, default=0.0, help="GPUs of a trial that trains in-process")
    add(
        "--tune.storage_path",
        type=str | None,
        default=None,
        help="folder or URI of the search (default: <trainer.default_root_dir>/ray_results)",
    )
    add("--tune.name", type=str | None, default=None, help="the search's name; an unfinished search resumes")
    add(
        "--tune.resume",
        type=bool | None,
        default=None,
        help="true: resume the search called --tune.name; false: never; default: resume when it exists",
    )
    add(
        "--tune.show_output",
        type=bool,
        default=False,
        help="true: the trials' own output also prints here, between Tune's tables (it always goes to "
        "<trial folder>/output.log)",
    )
    add(
        "--search_space",
        type=dict[str, AnyValue],
        default={},
        help="dotted keys (model.lr, data.batch_size, trainer.accumulate_grad_batches) to Ray Tune domains: "
        + "; ".join(DOMAINS.values()),
    )


def parse_domain(text: Any) -> tuple[str, tuple[Any, ...]]:
    """``"loguniform(1e-4, 1e-1)"`` -> ``("loguniform", (1e-4, 1e-1))``; runs anywhere.

    The arguments are Python literals, read with ``ast.literal_eval``: nothing is evaluated. Raises ValueError
    naming the problem and the valid expressions.
    """
    valid = f"Valid expressions: {'; '.join(DOMAINS.values())}."
    match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*", text, re.DOTALL) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a domain expression. {valid}")
    name, inside = match.groups()
    if name not in DOMAINS:
        close = difflib.get_close_matches(name, list(DOMAINS), n=1)
        raise ValueError(f"unknown function {name!r}.{f' Did you mean {close[0]}?' if close else ''} {valid}")
    try:
        args: tuple[Any, ...] = ast.literal_eval(f"({inside},)") if inside.strip() else ()
    except (ValueError, SyntaxError):
        raise ValueError(f"the arguments must be literals (numbers, strings, lists). Write {DOMAINS[name]}.") from None
    number = (int, float)
    if name in ("uniform", "loguniform", "randint"):
        kind = int if name == "randint" else number
        ok = len(args) == 2 and all(isinstance(a, kind) and not isinstance(a, bool) for a in args)
        if not ok or args[0] >= args[1] or (name == "loguniform" and args[0] <= 0):
            raise ValueError(f"write {DOMAINS[name]}, with low < high.")
    elif len(args) != 1 or not isinstance(args[0], list | tuple) or not args[0]:
        raise ValueError(f"write {DOMAINS[name]}, with at least one value.")
    return name, args


def ray_domain(text: str, for_mutation: bool = False) -> Any:
    """Ray Tune's object for a domain expression (PBT mutates a grid_search's values as a list). Driver."""
    import ray.tune

    name, args = parse_domain(text)
    if name == "grid_search":
        return list(args[0]) if for_mutation else ray.tune.grid_search(list(args[0]))
    if name == "choice":
        return ray.tune.choice(list(args[0]))
    return getattr(ray.tune, name)(*args)


def pop_search_space(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """``argv`` without its ``--search_space.<key> <domain>`` options, and those options (jsonargparse would let
    ``--search_space.model.b`` replace ``--search_space.model.a``). Driver."""
    rest, space = [], {}
    options = iter(argv)
    for arg in options:
        if not arg.startswith("--search_space."):
            rest.append(arg)
            continue
        key, equals, value = arg[len("--search_space.") :].partition("=")
        space[key] = value if equals else next(options, "")
    return rest, space


def check_search(text: str, given: dict[str, Any]) -> str:
    """Check the ``tune`` options and the search space (the config's ``search_space`` updated with ``given``) of
    the resolved config ``text``, collecting every problem; return the config to save, with search-space keys
    as ``model.lr`` and storage_path and name resolved. Driver."""
    import yaml

    config = yaml.safe_load(text)
    config["search_space"] = {**flatten(config.get("search_space") or {}), **given}
    search, problems = config["tune"], []
    if not search["metric"]:
        problems.append("--tune.metric is required: the logged metric to optimize, e.g. --tune.metric val_loss")
    if search["mode"] not in ("min", "max"):
        problems.append(f"--tune.mode {search['mode']!r}: use min or max")
    if search["scheduler"] not in SCHEDULERS:
        problems.append(_unknown_choice("scheduler", search["scheduler"], SCHEDULERS, "scheduler"))
    if search["search_alg"] not in SEARCH_ALGS:
        problems.append(_unknown_choice("search_alg", search["search_alg"], list(SEARCH_ALGS), "search algorithm"))
    elif (package := SEARCH_ALGS[search["search_alg"]]) and importlib.util.find_spec(package) is None:
        problems.append(
            f"--tune.search_alg {search['search_alg']}: the package {package!r} is not installed. Install it with "
            "pip install 'lightray[search]'"
        )
    if search["num_samples"] < 1:
        problems.append(f"--tune.num_samples {search['num_samples']}: give at least 1")
    if config.get("ckpt_path") is not None:
        problems.append(
            f"--ckpt_path {config['ckpt_path']!r}: a search's trials start from scratch, or from the checkpoints Tune "
            "gives them (PBT, a resumed search: --tune.resume). Remove ckpt_path (or set it to null); to start every "
            "trial from trained weights, load them in the model's __init__ or setup"
        )
    if not isinstance(config["trainer"]["num_workers"], int):
        problems.append("--trainer.num_workers: a search's trials need a fixed number of workers (no elastic range)")
    valid = _searchable_keys(config)
    space: dict[str, str] = {}
    for key, expression in flatten(config.get("search_space") or {}).items():
        short = re.sub(r"^(model|data)\.init_args\.", r"\1.", key)
        if short not in valid:
            problems.append(_unknown_search_key(key, short, valid))
            continue
        try:
            parse_domain(expression)
        except ValueError as err:
            fixed = f" A fixed value goes in --{short}." if str(err).startswith("not a domain") else ""
            problems.append(f"--search_space.{key} {expression!r}: {err}{fixed}")
        space[short] = expression
    grids = [key for key, expression in space.items() if str(expression).lstrip().startswith("grid_search")]
    if grids and search["search_alg"] in SEARCH_ALGS and search["search_alg"] != "random":
        problems.append(
            f"--search_space {', '.join(grids)}: --tune.search_alg {search['search_alg']} samples its own values and "
            "takes no grid_search; use choice([...]) instead, or --tune.search_alg random for a grid"
        )
    if not config.get("search_space"):
        problems.append(
            "nothing to search: give --search_space.<key> '<domain>' (or a search_space: block in the "
            "config), e.g. --search_space.model.lr 'loguniform(1e-4, 1e-1)'. Domains: " + "; ".join(DOMAINS.values())
        )
    if problems:
        raise UsageError(listing(problems))
    from lightray import storage

    root = config["trainer"]["default_root_dir"] or os.getcwd()
    root = root if storage.is_remote(root) else os.path.abspath(root)
    search["storage_path"] = search["storage_path"] or storage.join(root, "ray_results")
    search["name"] = search["name"] or time.strftime("tune-%Y%m%d-%H%M%S")  # saved: the config resumes the search
    config["search_space"] = space
    return yaml.safe_dump(config, sort_keys=False)


def _unknown_choice(option: str, value: Any, choices: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"--tune.{option} {value!r}: unknown {what}.{hint} Valid choices: " + ", ".join(choices)


def _searchable_keys(config: dict[str, Any]) -> list[str]:
    keys = ["seed_everything"]
    for group in ("model", "data"):
        init_args = (config.get(group) or {}).get("init_args") or {}
        keys += [f"{group}.{name}" for name in init_args]
    keys += [f"trainer.{name}" for name in config["trainer"] if name not in _FIXED_IN_A_SEARCH]
    return keys


def _unknown_search_key(key: str, short: str, valid: list[str]) -> str:
    group = short.split(".")[0]
    if group == "trainer" and short.split(".", 1)[-1] in _FIXED_IN_A_SEARCH:
        return (
            f"--search_space.{key}: the same for every trial of a search (it decides the trials' resources or "
            f"where they write); set it with --{short}"
        )
    in_group = [k for k in valid if k.startswith(group + ".")] if group in ("model", "data", "trainer") else []
    close = difflib.get_close_matches(short, valid, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    if group in ("model", "data") and not in_group:
        return f"--search_space.{key}: no --{group} class has such an init argument.{hint}"
    choices = in_group or [k for k in valid if "." not in k] + [
        "model.<init argument>",
        "data.<init argument>",
        "trainer.<option>",
    ]
    return f"--search_space.{key}: unknown key.{hint} Valid keys: {', '.join(choices)}"


# ====================================================================== dotted keys
def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"lr": x}}`` -> ``{"model.lr": x}`` (dotted keys from YAML and the command line merge)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"model.lr": x}`` -> ``{"model": {"lr": x}}``: Tune's nested config, as results show it."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *groups, name = key.split(".")
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = value
    return tree


def lookup(tree: dict[str, Any], key: str) -> Any:
    """The value at the dotted ``key`` of the nested ``tree``: ``lookup(tree, "model.lr")``."""
    for part in key.split("."):
        tree = tree[part]
    return tree

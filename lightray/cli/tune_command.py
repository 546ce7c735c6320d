"""``lightray tune``: a Ray Tune search over ``lightray fit`` runs, from the same options plus a search space.

Runs on the driver; each trial runs ``_fit_trial`` in its Tune trial process.
"""

from __future__ import annotations

import ast
import copy
import difflib
import inspect
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lightray.cli import SaveConfig, UsageError, _listing, _make_trainer, build_parser
from lightray.errors import MisconfigurationError
from lightray.tune.callback import TuneReportCallback

if TYPE_CHECKING:
    from jsonargparse import ArgumentParser
    from ray.tune import ResultGrid

    from lightray.trainer import Trainer

SCHEDULERS = ("fifo", "asha", "pbt")

# ====================================================================== lightray tune
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


def _ray_domain(text: str, for_mutation: bool = False) -> Any:
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
    config["search_space"] = {**_flatten(config.get("search_space") or {}), **given}
    search, problems = config["tune"], []
    if not search["metric"]:
        problems.append("--tune.metric is required: the logged metric to optimize, e.g. --tune.metric val_loss")
    if search["mode"] not in ("min", "max"):
        problems.append(f"--tune.mode {search['mode']!r}: use min or max")
    if search["scheduler"] not in SCHEDULERS:
        close = difflib.get_close_matches(str(search["scheduler"]), SCHEDULERS, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        problems.append(
            f"--tune.scheduler {search['scheduler']!r}: unknown scheduler.{hint} Valid choices: "
            + ", ".join(SCHEDULERS)
        )
    if search["num_samples"] < 1:
        problems.append(f"--tune.num_samples {search['num_samples']}: give at least 1")
    if not isinstance(config["trainer"]["num_workers"], int):
        problems.append("--trainer.num_workers: a search's trials need a fixed number of workers (no elastic range)")
    valid = _searchable_keys(config)
    space: dict[str, str] = {}
    for key, expression in _flatten(config.get("search_space") or {}).items():
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
    if not config.get("search_space"):
        problems.append(
            "nothing to search: give --search_space.<key> '<domain>' (or a search_space: block in the "
            "config), e.g. --search_space.model.lr 'loguniform(1e-4, 1e-1)'. Domains: " + "; ".join(DOMAINS.values())
        )
    if problems:
        raise UsageError(_listing(problems))
    from lightray import storage

    root = config["trainer"]["default_root_dir"] or os.getcwd()
    root = root if storage.is_remote(root) else os.path.abspath(root)
    search["storage_path"] = search["storage_path"] or storage.join(root, "ray_results")
    search["name"] = search["name"] or time.strftime("tune-%Y%m%d-%H%M%S")  # saved: the config resumes the search
    config["search_space"] = space
    return yaml.safe_dump(config, sort_keys=False)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"lr": x}}`` -> ``{"model.lr": x}`` (dotted keys from YAML and the command line merge)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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


def tune(text: str) -> ResultGrid:
    """Run (or resume) the search of the resolved config ``text`` with Ray Tune; print the best trial. Driver.

    Returns Ray's ``ResultGrid``. Each trial runs ``lightray fit`` with its sampled values (``_fit_trial``).
    """
    import ray
    import ray.tune
    import yaml

    import lightray.tune
    from lightray import storage

    config = yaml.safe_load(text)
    search, space = config.pop("tune"), config.pop("search_space")
    path = storage.join(search["storage_path"], search["name"])
    exists = ray.tune.Tuner.can_restore(path)
    if search["resume"] is True and not exists:
        raise UsageError(
            f"--tune.resume true: there is no search to resume at {path}. Check --tune.storage_path "
            "and --tune.name, or leave --tune.resume out to start it."
        )
    if search["resume"] is False and exists:
        raise UsageError(
            f"--tune.resume false: a search already exists at {path}. Choose another --tune.name, or "
            "leave --tune.resume out to resume it."
        )
    if exists:
        _check_same_search(path, space)
    trainer = config["trainer"]
    resources: dict[str, Any] = dict(
        num_workers=trainer["num_workers"],
        resources_per_worker=trainer["resources_per_worker"],
        use_gpu=trainer["use_gpu"],
        cpus_per_trial=search["cpus_per_trial"],
        gpus_per_trial=search["gpus_per_trial"],
    )
    max_epochs = trainer["max_epochs"] if isinstance(trainer["max_epochs"], int) and trainer["max_epochs"] > 0 else None
    scheduler = _scheduler(search["scheduler"], search["scheduler_args"], max_epochs, space)
    trial = _trial_function(config, search["metric"], list(space), path)
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING)
    storage.makedirs(path)
    storage.write_atomic(storage.join(path, "config.yaml"), SaveConfig(text)._write)
    if exists:
        print(f"lightray tune: resuming the search in {path}", flush=True)
        fn = lightray.tune.trainable(trial, **resources)
        results = ray.tune.Tuner.restore(path, trainable=fn, resume_errored=True).fit()
    else:
        tune_config = ray.tune.TuneConfig(
            metric=search["metric"],
            mode=search["mode"],
            num_samples=search["num_samples"],
            scheduler=scheduler,
            max_concurrent_trials=search["max_concurrent_trials"],
            reuse_actors=not trainer["num_workers"],
        )
        run_config = ray.tune.RunConfig(name=search["name"], storage_path=search["storage_path"])
        param_space = _nest({key: _ray_domain(expression) for key, expression in space.items()})
        tuner = lightray.tune.tuner(
            trial, param_space=param_space, tune_config=tune_config, run_config=run_config, **resources
        )
        results = tuner.fit()
    _print_results(results, config, search, list(space), path)
    return results


def _check_same_search(path: str, space: dict[str, str]) -> None:
    """Tune resumes a search with the search space it started with: refuse another one rather than ignore it."""
    import yaml

    from lightray import storage

    saved = storage.join(path, "config.yaml")
    if not storage.exists(saved):
        return
    with storage.open_for_read(saved) as f:
        before = (yaml.safe_load(f) or {}).get("search_space") or {}
    if before != space:
        raise UsageError(
            f"the search at {path} was started with the search space {before}, not {space}. Resume it "
            "with the same search space, or start a new search with another --tune.name."
        )


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"model.lr": x}`` -> ``{"model": {"lr": x}}``: Tune's nested config, as results show it."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *groups, name = key.split(".")
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = value
    return tree


def _lookup(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def _scheduler(name: str, args: dict[str, Any], max_epochs: int | None, space: dict[str, str]) -> Any:
    """Ray Tune's scheduler ``name`` with lightray's defaults (one Tune iteration per validation epoch), then
    ``args`` (Ray's own argument names). Driver."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    cls: type
    defaults: dict[str, Any]
    if name == "asha":  # rungs at 1, 2, 4, ... validation epochs, up to max_epochs
        cls, defaults = ASHAScheduler, {"grace_period": 1, "reduction_factor": 2, "max_t": max_epochs or 100}
    elif name == "pbt":  # after every report, the weakest quarter restarts from a strong trial's checkpoint
        mutations = _nest({key: _ray_domain(expression, for_mutation=True) for key, expression in space.items()})
        cls = PopulationBasedTraining
        defaults = {"time_attr": "training_iteration", "perturbation_interval": 1, "hyperparam_mutations": mutations}
    else:
        cls, defaults = FIFOScheduler, {}
    try:
        return cls(**{**defaults, **args})
    except (TypeError, ValueError) as err:
        accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "metric", "mode")]
        raise UsageError(
            f"--tune.scheduler_args {args}: {err}. The {name} scheduler (ray.tune.schedulers.{cls.__name__}) accepts: "
            + ", ".join(accepted)
        ) from None


def _user_paths(config: dict[str, Any]) -> list[str]:
    """The folders that make the config's class paths importable (the current folder, the user's modules):
    trials start in Tune's folders, where ``lightray fit``'s current-folder rule does not hold. Driver."""
    paths = [os.getcwd()]
    found = re.findall(r"class_path': '([\w.]+)'", repr(config))
    for class_path in found:
        module = sys.modules.get(class_path.rpartition(".")[0])
        file = getattr(module, "__file__", None)
        if module is None or not file or "site-packages" in file:
            continue
        root = os.path.dirname(file) if file.endswith("__init__.py") else file
        for _ in range(module.__name__.count(".") + 1):
            root = os.path.dirname(root)
        paths.append(root)
    return list(dict.fromkeys(paths))


def _trial_function(config: dict[str, Any], metric: str, keys: list[str], path: str) -> Callable[..., None]:
    """The trial as a function of Tune's sampled config (built on the driver, pickled to the trials)."""
    paths = _user_paths(config)

    def lightray_trial(sampled: dict[str, Any]) -> None:
        _fit_trial(config, {key: _lookup(sampled, key) for key in keys}, metric, paths, path)

    return lightray_trial


def _fit_trial(
    config: dict[str, Any], sampled: dict[str, Any], metric: str, paths: list[str], search_path: str
) -> None:
    """One trial: ``lightray fit`` with the search's config and this trial's ``sampled`` values, reporting to Tune.

    Runs in the trial process (its loop there, or on its Ray Train workers). Its logs and ``config.yaml`` (the
    trial's own, runnable with ``lightray fit --config``) go to the trial's folder.
    """
    import ray.tune

    from lightray import storage
    from lightray.seed import seed_everything

    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    config = copy.deepcopy(config)
    for key, value in sampled.items():
        *groups, name = re.sub(r"^(model|data)\.", r"\1.init_args.", key).split(".")
        (_lookup(config, ".".join(groups)) if groups else config)[name] = value
    # the trial's folder of the search: Tune would copy its local working folder there only with checkpoints
    trial_dir = ray.tune.get_context().get_trial_dir()
    local = not storage.is_remote(search_path)
    config["trainer"]["default_root_dir"] = (
        storage.join(search_path, os.path.basename(trial_dir)) if local else trial_dir
    )
    parser = build_parser()[1]["fit"]
    options = parser.parse_object(config)
    if options.seed_everything is not False:
        seed_everything(int(options.seed_everything))
    objects = parser.instantiate(options)
    trainer = _make_trainer(objects.trainer, parser.dump(options, skip_unset=False), _SearchReport(metric))
    trainer.fit(objects.model, datamodule=objects.data)


class _SearchReport(TuneReportCallback):
    """Reports every logged metric to Tune after each validation, and fails the trial at once when the search's
    metric is not among them. Runs where the trial's loop runs (the trial, or its Ray Train workers)."""

    def __init__(self, metric: str) -> None:
        super().__init__(metrics=None)
        self.metric = metric

    def _reduced_metrics(self, trainer: Trainer) -> dict[str, float]:
        reported = super()._reduced_metrics(trainer)
        if self.metric not in reported:
            logged = sorted(key for key in reported if key not in ("epoch", "step"))
            raise MisconfigurationError(
                f"--tune.metric {self.metric!r} is never logged: the trials log "
                f"{', '.join(logged) or 'nothing'}; pick one of these"
            )
        return reported


def _print_results(
    results: ResultGrid, config: dict[str, Any], search: dict[str, Any], keys: list[str], path: str
) -> None:
    """The trials, best first, and the best one's config, metric, checkpoint and how to load it. Driver."""
    import lightray.tune
    from lightray import storage

    metric, mode = search["metric"], search["mode"]
    for error in results.errors:
        found = re.search(r"--tune\.metric '[^']*' is never logged[^\n]*", str(error))
        if found:
            raise UsageError(found.group(0))
    trials = [results[i] for i in range(len(results))]
    done = [r for r in trials if metric in (r.metrics or {})]
    if not done:
        first = f" The first error: {results.errors[0]}" if results.errors else ""
        raise RuntimeError(f"No trial of the search in {path} reported {metric!r}.{first}")
    done.sort(key=lambda r: (r.metrics or {})[metric], reverse=mode == "max")

    def values(result: Any) -> str:
        return " ".join(f"{key}={_lookup(result.config, key)!r}" for key in keys)

    count = f"{len(results)} trial{'' if len(results) == 1 else 's'}"
    print(f"\n{count} in {path} ({len(results.errors)} failed), best first:")
    for result in done:
        metrics = result.metrics or {}
        print(f"  {metric}={metrics[metric]:.6g}  reports={metrics['training_iteration']}  {values(result)}")
    best = results.get_best_result(metric=metric, mode=mode)
    metrics = best.metrics or {}
    print(f"best trial: {metrics.get('trial_id')}  {metric}={metrics[metric]:.6g}  {values(best)}")
    if best.checkpoint is not None:
        checkpoint = lightray.tune.checkpoint_path(best)
        module, _, name = config["model"]["class_path"].rpartition(".")
        print(f"checkpoint: {checkpoint}")
        print(f"load it:    from {module} import {name}; model = {name}.load_from_checkpoint({checkpoint!r})")
    print(f"config:     {storage.join(path, 'config.yaml')} (rerun it to resume the search)")

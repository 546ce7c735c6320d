"""``lightray tune``: a Ray Tune search over ``lightray fit`` runs, from the same options plus a search space.

Runs on the driver; each trial runs ``_fit_trial`` in its Tune trial process. The options and the search space
are read and checked in :mod:`lightray.cli.search_space`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from lightray.cli import build_parser
from lightray.cli.common import UsageError, make_trainer, save_config
from lightray.cli.search_space import lookup, nest, ray_domain
from lightray.errors import MisconfigurationError
from lightray.ray_backend.user_code import is_user_module
from lightray.tune.callback import TuneReportCallback

if TYPE_CHECKING:
    from ray.tune import ResultGrid

    from lightray.trainer import Trainer


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
    search_alg = _search_alg(search["search_alg"], search["search_alg_args"])
    trial = _trial_function(config, search["metric"], list(space), path, search["show_output"])
    if not ray.is_initialized():  # the trials' output goes to their output.log; Tune's tables print here
        ray.init(logging_level=logging.WARNING, log_to_driver=search["show_output"])
    save_config(path, text)
    print(f"lightray tune: {'resuming' if exists else 'starting'} the search in {path}", flush=True)
    if exists:
        fn = lightray.tune.trainable(trial, **resources)
        results = ray.tune.Tuner.restore(path, trainable=fn, resume_errored=True).fit()
    else:
        tune_config = ray.tune.TuneConfig(
            metric=search["metric"],
            mode=search["mode"],
            num_samples=search["num_samples"],
            scheduler=scheduler,
            search_alg=search_alg,
            max_concurrent_trials=search["max_concurrent_trials"],
            reuse_actors=not trainer["num_workers"],
        )
        run_config = ray.tune.RunConfig(name=search["name"], storage_path=search["storage_path"])
        param_space = nest({key: ray_domain(expression) for key, expression in space.items()})
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


def _scheduler(name: str, args: dict[str, Any], max_epochs: int | None, space: dict[str, str]) -> Any:
    """Ray Tune's scheduler ``name`` with lightray's defaults (one Tune iteration per validation epoch), then
    ``args`` (Ray's own argument names). Driver."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    cls: type
    defaults: dict[str, Any]
    if name == "asha":  # rungs at 1, 2, 4, ... validation epochs, up to max_epochs
        cls, defaults = ASHAScheduler, {"grace_period": 1, "reduction_factor": 2, "max_t": max_epochs or 100}
    elif name == "pbt":  # after every report, the weakest quarter restarts from a strong trial's checkpoint
        mutations = nest({key: ray_domain(expression, for_mutation=True) for key, expression in space.items()})
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


def _search_alg(name: str, args: dict[str, Any]) -> Any:
    """Ray Tune's search algorithm ``name`` with ``args`` (Ray's own argument names); None for Tune's default
    (random and grid sampling) without arguments. The search's metric and mode come from the TuneConfig. Driver."""
    cls: type
    if name == "optuna":
        from ray.tune.search.optuna import OptunaSearch as cls

        logging.getLogger("optuna").setLevel(logging.WARNING)  # "A new study created in memory" would open the search
    elif name == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch as cls
    elif args:
        from ray.tune.search import BasicVariantGenerator as cls
    else:
        return None
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "metric", "mode", "space")]
        raise UsageError(
            f"--tune.search_alg_args {args}: {err}. The {name} search algorithm (ray.tune.search.{cls.__name__}) "
            "accepts: " + ", ".join(accepted)
        ) from None


def _user_paths(config: dict[str, Any]) -> list[str]:
    """The folders that make the config's class paths importable (the current folder, the user's modules):
    trials start in Tune's folders, where ``lightray fit``'s current-folder rule does not hold. Driver."""
    paths = [os.getcwd()]
    found = re.findall(r"class_path': '([\w.]+)'", repr(config))
    for class_path in found:
        module = sys.modules.get(class_path.rpartition(".")[0])
        if module is None or not is_user_module(module):  # installed code is importable in the trials already
            continue
        file = module.__file__ or ""
        root = os.path.dirname(file) if file.endswith("__init__.py") else file
        for _ in range(module.__name__.count(".") + 1):
            root = os.path.dirname(root)
        paths.append(root)
    return list(dict.fromkeys(paths))


def _trial_function(
    config: dict[str, Any], metric: str, keys: list[str], path: str, show_output: bool
) -> Callable[..., None]:
    """The trial as a function of Tune's sampled config (built on the driver, pickled to the trials)."""
    paths = _user_paths(config)

    def lightray_trial(sampled: dict[str, Any]) -> None:
        _fit_trial(config, {key: lookup(sampled, key) for key in keys}, metric, paths, path, show_output)

    return lightray_trial


def _fit_trial(
    config: dict[str, Any], sampled: dict[str, Any], metric: str, paths: list[str], search_path: str, show_output: bool
) -> None:
    """One trial: ``lightray fit`` with the search's config and this trial's ``sampled`` values, reporting to Tune.

    Runs in the trial process (its loop there, or on its Ray Train workers). Its logs, ``config.yaml`` (the
    trial's own, runnable with ``lightray fit --config``) and its output (``output.log``) go to the trial's folder.
    """
    import ray.tune

    from lightray import storage

    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    config = copy.deepcopy(config)
    for key, value in sampled.items():
        *groups, name = re.sub(r"^(model|data)\.", r"\1.init_args.", key).split(".")
        (lookup(config, ".".join(groups)) if groups else config)[name] = value
    # the trial's folder of the search: Tune would copy its local working folder there only with checkpoints
    trial_dir = ray.tune.get_context().get_trial_dir()
    local = not storage.is_remote(search_path)
    folder = storage.join(search_path, os.path.basename(trial_dir)) if local else trial_dir
    config["trainer"]["default_root_dir"] = folder
    os.makedirs(folder, exist_ok=True)
    with contextlib.nullcontext() if show_output else output_to(os.path.join(folder, "output.log")):
        _fit(config, metric)


def _fit(config: dict[str, Any], metric: str) -> None:
    from lightray.seed import seed_everything

    parser = build_parser()[1]["fit"]
    options = parser.parse_object(config)
    if options.seed_everything is not False:
        seed_everything(int(options.seed_everything))
    objects = parser.instantiate(options)
    trainer = make_trainer(objects.trainer, parser.dump(options, skip_unset=False), _SearchReport(metric))
    trainer.fit(objects.model, datamodule=objects.data)


@contextlib.contextmanager
def output_to(path: str) -> Iterator[None]:
    """This process's stdout and stderr into the file ``path`` for the block: at the file descriptors, so prints,
    warnings, logging handlers, progress bars and Ray's own lines all land there (the trial process)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


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
        return " ".join(f"{key}={lookup(result.config, key)!r}" for key in keys)

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
    if not search["show_output"]:
        logs = storage.join(path, "<trial>", "output.log")
        print(f"output:     each trial's prints, warnings and logs are in {logs}")

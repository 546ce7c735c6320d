"""What ``configure_optimizers`` may return: its forms parsed into optimizers and scheduler configs."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer

from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.trainer import Trainer

_SCHEDULER_KEYS = {"scheduler", "interval", "frequency", "monitor", "strict", "name", "reduce_on_plateau"}


@dataclass
class LRSchedulerConfig:
    """One learning-rate scheduler and when the loop steps it (Lightning's scheduler dict)."""

    scheduler: Any
    name: str | None = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: str | None = None
    strict: bool = True


def parse_optimizers(output: Any) -> tuple[list[Optimizer], list[LRSchedulerConfig]]:
    """Turn any of Lightning's ``configure_optimizers`` return forms into (optimizers, scheduler configs)."""
    optimizers: list[Optimizer]
    schedulers: list[Any] = []
    monitor: str | None = None
    if output is None:
        return [], []
    if isinstance(output, Optimizer):
        optimizers = [output]
    elif isinstance(output, Mapping):
        _check_keys(output, {"optimizer", "lr_scheduler", "monitor"}, "the dict returned by configure_optimizers")
        if "optimizer" not in output:
            raise MisconfigurationError(
                "The dict returned by `configure_optimizers` needs an 'optimizer' key, e.g. "
                "{'optimizer': opt, 'lr_scheduler': sched}."
            )
        optimizers = [output["optimizer"]]
        monitor = output.get("monitor")
        if output.get("lr_scheduler") is not None:
            schedulers = [output["lr_scheduler"]]
    elif (
        isinstance(output, Sequence)
        and len(output) == 2
        and isinstance(output[0], list)
        and all(isinstance(o, Optimizer) for o in output[0])
    ):
        optimizers = list(output[0])
        schedulers = list(output[1]) if isinstance(output[1], Sequence) else [output[1]]
    elif isinstance(output, Sequence) and all(isinstance(o, Mapping) for o in output):
        optimizers, schedulers = [], []
        for entry in output:
            _check_keys(entry, {"optimizer", "lr_scheduler", "monitor"}, "a dict returned by configure_optimizers")
            optimizers.append(entry["optimizer"])
            if entry.get("lr_scheduler") is not None:
                sched = entry["lr_scheduler"]
                if not isinstance(sched, Mapping) and entry.get("monitor"):
                    sched = {"scheduler": sched, "monitor": entry["monitor"]}
                schedulers.append(sched)
    elif isinstance(output, Sequence) and all(isinstance(o, Optimizer) for o in output):
        optimizers = list(output)
    else:
        raise MisconfigurationError(
            f"`configure_optimizers` returned {type(output).__name__}, which is not a supported form. Return an "
            "optimizer, a list of optimizers, ([optimizers], [schedulers]), a dict with 'optimizer' and "
            "optionally 'lr_scheduler' and 'monitor', or a list of such dicts."
        )
    for opt in optimizers:
        if not isinstance(opt, Optimizer):
            raise MisconfigurationError(
                f"`configure_optimizers` returned {opt!r} where a `torch.optim.Optimizer` was expected."
            )
    configs = [_scheduler_config(s, monitor) for s in schedulers]
    return optimizers, configs


def _scheduler_config(scheduler: Any, monitor: str | None) -> LRSchedulerConfig:
    if isinstance(scheduler, Mapping):
        _check_keys(scheduler, _SCHEDULER_KEYS, "the lr_scheduler dict")
        if "scheduler" not in scheduler:
            raise MisconfigurationError("The lr_scheduler dict needs a 'scheduler' key with the scheduler object.")
        interval = scheduler.get("interval", "epoch")
        if interval not in ("step", "epoch"):
            raise MisconfigurationError(f"lr_scheduler 'interval' is {interval!r}; use 'step' or 'epoch'.")
        config = LRSchedulerConfig(
            scheduler=scheduler["scheduler"],
            name=scheduler.get("name"),
            interval=interval,
            frequency=int(scheduler.get("frequency", 1)),
            monitor=scheduler.get("monitor", monitor),
            strict=bool(scheduler.get("strict", True)),
        )
        config.reduce_on_plateau = scheduler.get("reduce_on_plateau", _is_plateau(config.scheduler))
    else:
        config = LRSchedulerConfig(scheduler=scheduler, monitor=monitor, reduce_on_plateau=_is_plateau(scheduler))
    if config.reduce_on_plateau and config.monitor is None:
        raise MisconfigurationError(
            "A `ReduceLROnPlateau` scheduler needs a metric to monitor: return "
            "{'optimizer': opt, 'lr_scheduler': {'scheduler': sched, 'monitor': 'val_loss'}}."
        )
    if config.frequency < 1:
        raise MisconfigurationError(f"lr_scheduler 'frequency' must be >= 1, got {config.frequency}.")
    return config


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _check_keys(mapping: Mapping, allowed: set[str], what: str) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise MisconfigurationError(f"Unknown keys {sorted(unknown)} in {what}; allowed keys: {sorted(allowed)}.")


def configure_optimizers(trainer: Trainer) -> None:
    """Call the module's ``configure_optimizers`` and give the trainer its optimizers and schedulers."""
    from lightray.optimization.optimizer import LightningOptimizer

    module = trainer.lightning_module
    output = trainer.hooks.call_module("configure_optimizers")
    optimizers, schedulers = parse_optimizers(output)
    if not optimizers:
        if output is None:
            warnings.warn(
                "`LightningModule.configure_optimizers` returned `None`, this fit will run with no optimizer",
                UserWarning,
                stacklevel=2,
            )
        optimizers = [NoOptimizer()]
    if module.automatic_optimization and len(optimizers) > 1:
        raise MisconfigurationError(
            "Several optimizers need manual optimization: set `self.automatic_optimization = False` in "
            "`__init__` and step them yourself in `training_step`."
        )
    trainer.optimizers = optimizers
    trainer.lr_scheduler_configs = schedulers
    trainer.lightning_optimizers = [LightningOptimizer(opt, trainer.fit_loop.optimization) for opt in optimizers]


class NoOptimizer(Optimizer):
    """Stands in when ``configure_optimizers`` returns None: steps do nothing."""

    def __init__(self) -> None:
        super().__init__([torch.zeros(1)], {})

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        return closure() if closure is not None else None

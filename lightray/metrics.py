"""What ``self.log`` records: per-hook defaults, per-step values, epoch reductions, and where they go.

Values stay tensors until a logger or the progress bar needs numbers, so logging every step costs no
device synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from lightray.errors import MisconfigurationError
from lightray.utilities.apply_func import infer_batch_size

if TYPE_CHECKING:
    from lightray.strategies import Strategy

# hook -> (default on_step, default on_epoch, on_step allowed). Hooks not listed may not log.
_STEP, _EPOCH, _EVAL_STEP = (True, False, True), (False, True, False), (False, True, True)
LOG_DEFAULTS: dict[str, tuple[bool, bool, bool]] = {
    **dict.fromkeys(
        [
            "training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward", "backward",
            "on_after_backward", "on_before_optimizer_step", "optimizer_step", "configure_gradient_clipping",
            "clip_gradients", "on_before_zero_grad", "optimizer_zero_grad",
        ],
        _STEP,
    ),
    **dict.fromkeys(
        [
            "on_train_start", "on_train_epoch_start", "on_train_epoch_end", "on_validation_start",
            "on_validation_epoch_start", "on_validation_epoch_end", "on_test_start", "on_test_epoch_start",
            "on_test_epoch_end",
        ],
        _EPOCH,
    ),
    **dict.fromkeys(
        [
            "validation_step", "on_validation_batch_start", "on_validation_batch_end", "test_step",
            "on_test_batch_start", "on_test_batch_end",
        ],
        _EVAL_STEP,
    ),
}  # fmt: skip

_REDUCE = {"mean", "sum", "max", "min"}
# Lightning's other spellings: the torch functions, Python's builtins, "avg" and any letter case
_REDUCE_ALIASES: dict[Any, str] = {torch.mean: "mean", torch.sum: "sum", torch.max: "max", torch.min: "min",
                                   sum: "sum", max: "max", min: "min", "avg": "mean"}  # fmt: skip


def _is_torchmetric(value: Any) -> bool:
    return (
        not isinstance(value, torch.Tensor)
        and all(hasattr(value, name) for name in ("update", "compute", "reset"))
        and isinstance(value, torch.nn.Module)
    )


@dataclass
class _Entry:
    name: str  # as logged, with ``/dataloader_idx_N`` when an evaluation has several loaders
    on_step: bool
    on_epoch: bool
    reduce_fx: str
    prog_bar: bool
    logger: bool
    sync_dist: bool
    metric: Any = None  # a torchmetrics Metric, when one was logged
    step_value: torch.Tensor | None = None
    total: torch.Tensor | None = None  # running sum (weighted for mean), max or min
    weight: float = 0.0
    seen: bool = False
    suffix: str = ""  # the ``/dataloader_idx_N`` part of the name, if any
    computed: torch.Tensor | None = None  # the epoch value, until the next update

    def key(self, fork: str) -> str:
        """The name under which loggers see it: ``x_step``/``x_epoch`` when logged both ways (before the
        dataloader suffix, as Lightning names it: ``loss_epoch/dataloader_idx_0``)."""
        if not (self.on_step and self.on_epoch):
            return self.name
        base = self.name[: len(self.name) - len(self.suffix)] if self.suffix else self.name
        return f"{base}_{fork}{self.suffix}"

    def update(self, value: torch.Tensor, batch_size: int) -> None:
        self.computed = None
        if not self.on_epoch or self.metric is not None:
            return
        if self.reduce_fx == "mean":
            contribution = value * batch_size
            self.total = contribution if self.total is None else self.total + contribution
            self.weight += batch_size
        elif self.total is None:
            self.total = value.clone()
        elif self.reduce_fx == "sum":
            self.total = self.total + value
        elif self.reduce_fx == "max":
            self.total = torch.maximum(self.total, value)
        else:
            self.total = torch.minimum(self.total, value)

    def epoch_value(self, strategy: Strategy) -> torch.Tensor:
        """The epoch's reduction (reduced over ranks with sync_dist); computed once until the next update."""
        if self.computed is None:
            self.computed = self._reduce(strategy)
        return self.computed

    def _reduce(self, strategy: Strategy) -> torch.Tensor:
        if self.metric is not None:
            return self.metric.compute()
        assert self.total is not None
        total = self.total
        if self.reduce_fx == "mean":
            weight = torch.tensor(self.weight, dtype=total.dtype, device=total.device)
            if self.sync_dist:
                total, weight = strategy.reduce(total, "sum"), strategy.reduce(weight, "sum")
            return total / weight
        return strategy.reduce(total, self.reduce_fx) if self.sync_dist else total


@dataclass
class MetricStore:
    """Everything logged during one pass (fit's training, a validation run, test).

    ``view()`` is what the trainer's ``callback_metrics``, ``logged_metrics`` and ``progress_bar_metrics`` show
    of it when read, as in Lightning: the step values while batches run, the epoch's reductions once its batches
    are done (``epoch_view``). Evaluation step values reach only the loggers and the progress bar."""

    strategy: Strategy
    training: bool = False
    epoch_view: bool = False
    entries: dict[str, _Entry] = field(default_factory=dict)
    current_fx: str | None = None
    batch: Any = None  # the current batch, for inferring batch sizes
    dataloader_idx: int | None = None  # set when an evaluation stage has several loaders
    changes: int = 0  # counts logs and resets, so ``view`` computes once per change (it is read often)
    cached_view: tuple[int, bool, tuple] | None = None

    def log(
        self,
        name: str,
        value: Any,
        *,
        prog_bar: bool,
        logger: bool,
        on_step: bool | None,
        on_epoch: bool | None,
        reduce_fx: Any,
        enable_graph: bool,
        sync_dist: bool,
        add_dataloader_idx: bool,
        batch_size: int | None,
        rank_zero_only: bool,
    ) -> None:
        self.changes += 1
        if not isinstance(name, str):
            raise MisconfigurationError(
                f"`self.log({name!r}, ...)`: the name must be a str, got {type(name).__name__}."
            )
        fx = self.current_fx
        defaults = LOG_DEFAULTS.get(fx or "")
        if defaults is None:
            raise MisconfigurationError(
                f"You can't `self.log({name!r}, ...)` inside `{fx}`. Log from the step methods or from "
                "the batch, epoch or start hooks of training, validation and test."
            )
        default_step, default_epoch, step_allowed = defaults
        on_step = default_step if on_step is None else on_step
        on_epoch = default_epoch if on_epoch is None else on_epoch
        if not on_step and not on_epoch:
            raise MisconfigurationError(
                f"`self.log({name!r}, on_step=False, on_epoch=False)` is not useful: the value would go nowhere. "
                "Log it per step, per epoch, or both."
            )
        if on_step and not step_allowed:
            raise MisconfigurationError(
                f"`self.log({name!r}, on_step=True)` is not possible in `{fx}`; log it with on_step=False."
            )
        key = reduce_fx.lower() if isinstance(reduce_fx, str) else reduce_fx
        reduce = _REDUCE_ALIASES.get(key, key)
        if reduce not in _REDUCE:
            raise MisconfigurationError(
                f"`self.log({name!r}, reduce_fx={reduce_fx!r})`: reduce_fx must be one of {sorted(_REDUCE)}."
            )
        suffix = (
            f"/dataloader_idx_{self.dataloader_idx}" if add_dataloader_idx and self.dataloader_idx is not None else ""
        )
        name += suffix

        metric = None
        if _is_torchmetric(value):
            metric, tensor = value, getattr(value, "_forward_cache", None)  # the value of the last update
            if on_step and tensor is None:
                raise MisconfigurationError(
                    f"`self.log({name!r}, metric)` on_step needs the metric to be called (`metric(preds, "
                    "target)`) before logging; or call `metric.update` and log with on_step=False."
                )
            tensor = tensor.detach() if isinstance(tensor, torch.Tensor) else tensor
        else:
            tensor = self._to_tensor(name, value, enable_graph)

        entry = self.entries.get(name)
        if entry is None:
            entry = _Entry(name, on_step, on_epoch, reduce, prog_bar, logger, sync_dist, metric, suffix=suffix)
            self.entries[name] = entry
        entry.seen = True
        entry.computed = None
        if on_step and tensor is not None:
            entry.step_value = self.strategy.reduce(tensor, "mean") if sync_dist else tensor
        if on_epoch and metric is None and tensor is not None:
            if batch_size is None:
                batch_size = infer_batch_size(self.batch) if reduce == "mean" else 1
            entry.update(tensor, batch_size)

    @staticmethod
    def _to_tensor(name: str, value: Any, enable_graph: bool) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise MisconfigurationError(
                    f"`self.log({name!r}, value)` needs a scalar, got a tensor of shape {tuple(value.shape)}. "
                    "Reduce it first (e.g. `value.mean()`), or log each element under its own name."
                )
            tensor = value if enable_graph else value.detach()
            tensor = tensor.reshape(())
            if tensor.dtype in (torch.float32, torch.float64):
                return tensor
            # reduced in float32 at least (float64 under precision="64-true"), as Lightning reduces them
            default = torch.get_default_dtype()
            return tensor.to(default if default in (torch.float32, torch.float64) else torch.float32)
        if isinstance(value, bool | int | float):
            return torch.tensor(float(value))
        raise MisconfigurationError(
            f"`self.log({name!r}, value)` got a {type(value).__name__}; log a number, a scalar tensor or "
            "a torchmetrics Metric (use `log_dict` for a dict)."
        )

    # ------------------------------------------------------------------ reading values
    def step_metrics(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(callback, logger, progress bar) metrics of the values logged with on_step since the last reset."""
        stepped = [e for e in self.entries.values() if e.on_step and e.step_value is not None]
        return _split(stepped, lambda e: e.step_value, lambda e: e.key("step"))

    def epoch_metrics(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(callback, logger, progress bar) metrics of the epoch reductions."""
        reduced = [
            e for e in self.entries.values() if e.on_epoch and e.seen and (e.total is not None or e.metric is not None)
        ]
        return _split(reduced, lambda e: e.epoch_value(self.strategy), lambda e: e.key("epoch"))

    def view(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(callback, logger, progress bar) metrics as the trainer shows them now."""
        if self.cached_view is not None and self.cached_view[:2] == (self.changes, self.epoch_view):
            return self.cached_view[2]
        if self.epoch_view:
            view = self.epoch_metrics()
        else:
            callback, logged, pbar = self.step_metrics()
            view = (callback if self.training else {}), logged, pbar
        self.cached_view = (self.changes, self.epoch_view, view)
        return view

    def clear_step_values(self) -> None:
        self.changes += 1
        for entry in self.entries.values():
            entry.step_value = None

    def reset(self) -> None:
        """Forget the epoch's accumulations (torchmetrics are reset too)."""
        for entry in self.entries.values():
            if entry.metric is not None and entry.seen:
                entry.metric.reset()
        self.entries.clear()
        self.epoch_view = False
        self.changes += 1


def _split(
    entries: list[_Entry], value_of: Callable[[_Entry], Any], key_of: Callable[[_Entry], str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each entry's value under its plain name and its key (``_step``/``_epoch`` when logged both ways), for
    callbacks; under its key for the loggers and the progress bar, when it goes there."""
    callback, logged, pbar = {}, {}, {}
    for entry in entries:
        value, key = value_of(entry), key_of(entry)
        callback[entry.name] = value
        callback[key] = value
        if entry.logger:
            logged[key] = value
        if entry.prog_bar:
            pbar[key] = value
    return callback, logged, pbar


def to_floats(metrics: dict[str, Any]) -> dict[str, float]:
    """Numbers for loggers and the progress bar (this is where a device sync happens)."""
    return {k: float(v.item()) if isinstance(v, torch.Tensor) else float(v) for k, v in metrics.items()}

"""Timer: stop training once a time budget is spent (``Trainer(max_time=...)`` adds one)."""

from __future__ import annotations

import datetime
import re
import time
from typing import TYPE_CHECKING, Any

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


def parse_duration(value: Any, name: str) -> float | None:
    """Seconds from Lightning's forms of a duration: ``"DD:HH:MM:SS"``, a ``timedelta``, a dict of timedelta's
    arguments (``{"hours": 1}``), or seconds; ``name`` is the argument, for the error message."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, dict):
        try:
            return datetime.timedelta(**value).total_seconds()
        except TypeError:
            pass
    if isinstance(value, str) and re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", value.strip()):
        days, hours, minutes, seconds = (int(p) for p in value.strip().split(":"))
        return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()
    raise MisconfigurationError(
        f"{name}: {value!r} is not a duration; use 'DD:HH:MM:SS' (e.g. '00:12:00:00'), a datetime.timedelta, "
        "a dict like {'hours': 1}, or seconds"
    )


class Timer(Callback):
    """Tracks time per stage and sets ``trainer.should_stop`` when ``duration`` is used up.

    The elapsed training time is saved in checkpoints, so a resumed run continues the same budget.
    Runs in the training process; under Ray rank 0's clock decides for all ranks.
    """

    def __init__(
        self, duration: str | datetime.timedelta | dict[str, int] | float | None = None, interval: str = "step"
    ) -> None:
        if interval not in ("step", "epoch"):
            raise MisconfigurationError(f"Timer(interval={interval!r}): use 'step' or 'epoch'.")
        self._duration = parse_duration(duration, "Timer(duration=...)")
        self._interval = interval
        self._start: dict[str, float | None] = {"fit": None, "validate": None, "test": None}
        self._end: dict[str, float | None] = dict.fromkeys(self._start)
        self._offset = 0.0  # training time spent before a resume

    def time_elapsed(self, stage: str = "fit") -> float:
        start, end = self._start.get(stage), self._end.get(stage)
        offset = self._offset if stage == "fit" else 0.0
        if start is None:
            return offset
        return offset + ((end if end is not None else time.monotonic()) - start)

    def time_remaining(self, stage: str = "fit") -> float | None:
        return None if self._duration is None else self._duration - self.time_elapsed(stage)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["fit"], self._end["fit"] = time.monotonic(), None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end["fit"] = time.monotonic()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["test"], self._end["test"] = time.monotonic(), None

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end["test"] = time.monotonic()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self._interval == "step":
            self._check(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._interval == "epoch":
            self._check(trainer)

    def _check(self, trainer: Trainer) -> None:
        if self._duration is None:
            return
        out_of_time = trainer.strategy.broadcast(self.time_elapsed("fit") >= self._duration)
        trainer.should_stop = trainer.should_stop or bool(out_of_time)

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {"fit": self.time_elapsed("fit")}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = float(state_dict.get("time_elapsed", {}).get("fit", 0.0))

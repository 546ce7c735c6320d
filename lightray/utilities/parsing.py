"""Hyperparameters: ``AttributeDict`` and the ``__init__`` arguments that ``save_hyperparameters`` collects."""

from __future__ import annotations

import inspect
import pickle
import types
from typing import Any


class AttributeDict(dict):
    """A dict whose keys are also attributes: ``hparams.lr`` and ``hparams["lr"]``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(f"No hyperparameter named {key!r}; known: {sorted(self)}") from err

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]


def collect_init_args(frame: types.FrameType | None, obj: object) -> dict[str, Any]:
    """Arguments of every ``__init__`` on the call stack that is building ``obj`` (subclass values win)."""
    collected: list[dict[str, Any]] = []
    while frame is not None:
        if frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is obj:
            info = inspect.getargvalues(frame)
            local_args = {name: info.locals[name] for name in info.args if name != "self"}
            if info.keywords:
                local_args.update(info.locals.get(info.keywords, {}))
            if info.varargs and info.locals.get(info.varargs):
                local_args[info.varargs] = info.locals[info.varargs]
            collected.append(local_args)
        frame = frame.f_back
    merged: dict[str, Any] = {}
    for args in reversed(collected):  # base classes first, the outermost subclass last
        merged.update(args)
    return merged


def is_picklable(obj: object) -> bool:
    """Whether ``obj`` survives ``pickle.dumps`` (Lightning's check for hyperparameters)."""
    try:
        pickle.dumps(obj)
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    return True

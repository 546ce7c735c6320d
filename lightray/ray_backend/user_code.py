"""Which code is the user's own, shipped by value to Ray's processes so they need not import it from disk.

Ray pickles with cloudpickle, which sends a class or function of an importable module by reference: the
receiving process imports the module by name, and fails when the user's files are not on its path (a Tune
trial starts in its own folder; a worker node may lack the script's folder). Registering the user's
modules "by value" sends their code along. Code of ``__main__`` is sent by value by cloudpickle anyway;
installed packages and the libraries below are imported where they run, never sent.
"""

from __future__ import annotations

import inspect
import sys
import sysconfig
from collections.abc import Iterable
from types import ModuleType

# imported by every Ray process that runs lightray: never by value
LIBRARIES = frozenset({"lightray", "torch", "ray", "pytorch_lightning", "lightning"})


def is_user_module(module: ModuleType | None) -> bool:
    """Whether ``module`` is the user's own code (pickled by value; its folder put on a Tune trial's path): a
    module loaded from a file that is not ``__main__``, not installed (site-packages), not the standard library,
    and not one of :data:`LIBRARIES`."""
    if module is None or module.__name__ == "__main__" or module.__name__.split(".")[0] in LIBRARIES:
        return False
    path = getattr(module, "__file__", None) or ""
    return bool(path) and "site-packages" not in path and not path.startswith(sysconfig.get_paths()["stdlib"])


def defining_module(obj: object) -> ModuleType | None:
    """The loaded module that defines ``obj``: its own for a class or function, its class's for any other object."""
    name = getattr(obj, "__module__", None) if inspect.isclass(obj) or inspect.isroutine(obj) else type(obj).__module__
    return sys.modules.get(name) if isinstance(name, str) else None


def register_by_value(objects: Iterable[object]) -> None:
    """Have cloudpickle send the user modules that define ``objects`` (classes, functions or instances) by value.

    Runs where they are pickled (the driver). Modules that are not the user's (:func:`is_user_module`) are left
    to be pickled by reference.
    """
    from ray import cloudpickle

    for module in {defining_module(obj) for obj in objects}:
        if module is not None and is_user_module(module):
            cloudpickle.register_pickle_by_value(module)

"""Messages from rank 0 only: Lightning's ``rank_zero_only``, ``rank_zero_info``, ``rank_zero_warn`` and
``rank_zero_debug``. Info goes to the ``lightray`` logger (INFO, shown on stderr unless the program configured
logging itself), warnings through :mod:`warnings`. Runs in every process; only global rank 0 speaks."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("lightray")

T = TypeVar("T")


def rank_zero_only(fn: Callable[..., T]) -> Callable[..., T | None]:
    """Run ``fn`` on global rank 0 only (``rank_zero_only.rank``, set by the strategy on workers)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> T | None:
        return fn(*args, **kwargs) if rank_zero_only.rank == 0 else None  # type: ignore[attr-defined]

    return wrapped


rank_zero_only.rank = int(os.environ.get("RANK", 0))  # type: ignore[attr-defined]


@rank_zero_only
def rank_zero_info(message: str) -> None:
    log.info(message)


@rank_zero_only
def rank_zero_debug(message: str) -> None:
    log.debug(message)


@rank_zero_only
def rank_zero_warn(message: str | Warning, category: type[Warning] = UserWarning, stacklevel: int = 4) -> None:
    warnings.warn(message, category, stacklevel=stacklevel)


def rank_zero_deprecation(message: str | Warning, stacklevel: int = 5) -> None:
    """A ``DeprecationWarning`` from global rank 0 only."""
    rank_zero_warn(message, category=DeprecationWarning, stacklevel=stacklevel)

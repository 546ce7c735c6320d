"""Seeding and RNG state, so that two runs (or a run and its resume) draw the same numbers."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int | None = None, workers: bool = False) -> int:
    """Seed python, numpy and torch (CPU and CUDA) with ``seed`` and return it.

    Runs wherever it is called: on the driver for local runs, on each worker under Ray.
    With ``seed=None`` the ``PL_GLOBAL_SEED`` environment variable is used, else 0.
    ``workers=True`` sets ``PL_SEED_WORKERS`` as Lightning does; give a DataLoader
    ``worker_init_fn=lightray.seed.worker_init_fn`` to seed numpy and python in each loader worker too
    (torch already seeds them).
    """
    if seed is None:
        seed = global_seed() or 0
    if not isinstance(seed, int) or not (0 <= seed <= np.iinfo(np.uint32).max):
        raise ValueError(f"seed must be an int in [0, 2**32 - 1], got {seed!r}")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PL_SEED_WORKERS"] = str(int(workers))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def global_seed() -> int | None:
    """The seed ``seed_everything`` set in this process (``PL_GLOBAL_SEED``), or None."""
    value = os.environ.get("PL_GLOBAL_SEED")
    return int(value) if value is not None else None


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn`` giving each loader worker its own numpy and python seed."""
    base = torch.initial_seed() % 2**32
    np.random.seed((base + worker_id) % 2**32)
    random.seed(base + worker_id)


def collect_rng_states() -> dict[str, Any]:
    """Every RNG state the training process owns, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state: Any = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_safe(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_states`."""
    torch.set_rng_state(states["torch"])
    np_state = states["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Every RNG as it was before the block, whatever the block drew (Lightning's ``isolate_rng``)."""
    states = collect_rng_states()
    try:
        yield
    finally:
        restore_rng_states(states)


def _python_state_to_safe(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]

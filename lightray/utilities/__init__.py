"""Lightning's general utilities at their import paths (``lightning.pytorch.utilities`` -> ``lightray.utilities``).

``measure_flops``, ``find_shared_parameters``, ``set_shared_parameters`` and ``is_shared_filesystem`` import, and
say when called that lightray does not have them and what to use instead.
"""

from __future__ import annotations

import enum
import os
import warnings
from typing import Any, NoReturn

import torch

from lightray.errors import MisconfigurationError, PossibleUserWarning
from lightray.utilities.apply_func import move_data_to_device
from lightray.utilities.combined_loader import CombinedLoader
from lightray.utilities.parsing import AttributeDict, is_picklable
from lightray.utilities.rank_zero import rank_zero_deprecation, rank_zero_info, rank_zero_only, rank_zero_warn


class LightningEnum(str, enum.Enum):
    """A string enum that compares equal to its value, case-insensitively."""

    @classmethod
    def from_str(cls, value: str) -> LightningEnum | None:
        return next((member for member in cls if member.value.lower() == str(value).lower()), None)

    def __eq__(self, other: object) -> bool:
        other = other.value if isinstance(other, enum.Enum) else other
        return str(self.value).lower() == str(other).lower()

    def __hash__(self) -> int:
        return hash(str(self.value).lower())


class GradClipAlgorithmType(LightningEnum):
    VALUE = "value"
    NORM = "norm"


def grad_norm(module: torch.nn.Module, norm_type: float | int | str) -> dict[str, float]:
    """The ``norm_type`` norm of each parameter's gradient and of all of them together, as Lightning names them
    (``grad_2.0_norm/<param>``, ``grad_2.0_norm_total``); for ``self.log_dict`` in ``on_before_optimizer_step``."""
    norm_type = float(norm_type)
    if norm_type <= 0:
        raise ValueError(f"grad_norm(norm_type={norm_type}): use a positive float, or 'inf'")
    norms = {
        f"grad_{norm_type}_norm/{name}": p.grad.data.norm(norm_type)
        for name, p in module.named_parameters()
        if p.grad is not None
    }
    if norms:
        norms[f"grad_{norm_type}_norm_total"] = torch.tensor(list(norms.values())).norm(norm_type)
    return {name: float(value) for name, value in norms.items()}


def disable_possible_user_warnings() -> None:
    """Silence lightray's ``PossibleUserWarning`` s (hints such as "fewer batches than log_every_n_steps")."""
    warnings.filterwarnings("ignore", category=PossibleUserWarning)


def suggested_max_num_workers(local_world_size: int) -> int:
    """DataLoader worker processes per training process: the CPUs over the local processes, one left over."""
    if local_world_size < 1:
        raise ValueError(f"suggested_max_num_workers(local_world_size={local_world_size}): must be >= 1")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // local_world_size - 1)


def _not_in_lightray(name: str, instead: str) -> Any:
    def unsupported(*args: Any, **kwargs: Any) -> NoReturn:
        raise MisconfigurationError(f"lightray has no {name}: {instead}")

    unsupported.__name__ = unsupported.__qualname__ = name
    return unsupported


measure_flops = _not_in_lightray("measure_flops", "use torch.utils.flop_counter.FlopCounterMode directly")
find_shared_parameters = _not_in_lightray(
    "find_shared_parameters", "tie weights in __init__ by assigning one Parameter to both modules"
)
set_shared_parameters = _not_in_lightray(
    "set_shared_parameters", "tie weights in __init__ by assigning one Parameter to both modules"
)
is_shared_filesystem = _not_in_lightray(
    "is_shared_filesystem", "on Ray, checkpoints go to storage_path (a shared folder or a URI) by design"
)

__all__ = [
    "AttributeDict",
    "CombinedLoader",
    "GradClipAlgorithmType",
    "LightningEnum",
    "disable_possible_user_warnings",
    "find_shared_parameters",
    "grad_norm",
    "is_picklable",
    "is_shared_filesystem",
    "measure_flops",
    "move_data_to_device",
    "rank_zero_deprecation",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "set_shared_parameters",
    "suggested_max_num_workers",
]

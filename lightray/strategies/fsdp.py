"""``FSDPStrategy``: sharded data parallelism (torch's FSDP2, ``fully_shard``) on Ray Train workers (driver side:
the options; ``ray_fsdp.RayFSDPStrategy`` applies them on each worker).

Each worker holds a shard of every parameter, gradient and optimizer state; a shard unit's full parameters exist
only while it computes. ``auto_wrap_policy`` says which submodules are their own units (module classes, as
Lightning users write ``{TransformerBlock}``, or a callable ``policy(module) -> bool``); the rest of the module
forms the root unit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

Policy = set[type[nn.Module]] | list[type[nn.Module]] | tuple[type[nn.Module], ...] | Callable[[nn.Module], bool]
STATE_DICT_TYPES = ("sharded", "full")


class FSDPStrategy:
    """``Trainer(strategy=FSDPStrategy(auto_wrap_policy={Block}), num_workers=2)``; ``strategy="fsdp"`` is
    ``FSDPStrategy()``. Built on the driver.

    ``reshard_after_forward`` frees a unit's gathered parameters after its forward (less memory, one more
    all-gather in backward); ``cpu_offload`` keeps the shards and their optimizer state in host memory;
    ``activation_checkpointing_policy`` (module classes or a callable, like ``auto_wrap_policy``) keeps only the
    inputs of those submodules from forward and recomputes the rest in backward. ``precision="bf16-mixed"`` (or
    ``"16-mixed"``) gathers parameters in that dtype for computing, and reduces gradients in float32.
    Checkpoints are sharded by default: one folder per save, each worker writing its own shards of the weights
    and optimizer state in parallel (``torch.distributed.checkpoint``), loadable on another number of workers;
    ``lightray consolidate`` (or :func:`consolidate`) makes one Lightning-format file of it.
    ``state_dict_type="full"`` instead gathers the full state on rank 0 into one file (small models); it is refused,
    before anything is gathered, when that state exceeds ``full_state_memory_budget`` bytes (default: rank 0's
    available host memory).
    """

    def __init__(
        self,
        auto_wrap_policy: Policy | None = None,
        cpu_offload: bool = False,
        reshard_after_forward: bool = True,
        state_dict_type: str = "sharded",
        activation_checkpointing_policy: Policy | None = None,
        full_state_memory_budget: int | None = None,
        **kwargs: Any,
    ) -> None:
        from lightray.errors import MisconfigurationError

        problems = []
        if state_dict_type not in STATE_DICT_TYPES:
            problems.append(f"state_dict_type={state_dict_type!r}: use one of {STATE_DICT_TYPES}")
        if kwargs:
            problems.append(
                f"{sorted(kwargs)}: FSDP1 options lightray does not take (it runs FSDP2's fully_shard); the options "
                "are auto_wrap_policy, activation_checkpointing_policy, cpu_offload, reshard_after_forward, "
                "state_dict_type and full_state_memory_budget"
            )
        if problems:
            raise MisconfigurationError("FSDPStrategy: " + "; ".join(problems))
        self.auto_wrap_policy = auto_wrap_policy
        self.activation_checkpointing_policy = activation_checkpointing_policy
        self.cpu_offload, self.reshard_after_forward = cpu_offload, reshard_after_forward
        self.state_dict_type = state_dict_type
        self.full_state_memory_budget = full_state_memory_budget

    def is_unit(self, module: nn.Module) -> bool:
        """Whether ``module`` becomes its own shard unit under ``auto_wrap_policy``."""
        return matches(self.auto_wrap_policy, module)

    def is_checkpointed(self, module: nn.Module) -> bool:
        """Whether ``module``'s activations are recomputed in backward (``activation_checkpointing_policy``)."""
        return matches(self.activation_checkpointing_policy, module)

    def __repr__(self) -> str:
        return (
            f"FSDPStrategy(auto_wrap_policy={self.auto_wrap_policy!r}, "
            f"activation_checkpointing_policy={self.activation_checkpointing_policy!r}, "
            f"cpu_offload={self.cpu_offload}, reshard_after_forward={self.reshard_after_forward}, "
            f"state_dict_type={self.state_dict_type!r})"
        )


def matches(policy: Policy | None, module: nn.Module) -> bool:
    """Whether ``policy`` (module classes, or a callable) selects ``module``."""
    if policy is None:
        return False
    if callable(policy) and not isinstance(policy, type):
        return bool(policy(module))
    return isinstance(module, tuple(policy))  # type: ignore[arg-type]


def fsdp_options(strategy: Any) -> FSDPStrategy | None:
    """The FSDP options ``strategy`` (a name or an object) asks for; None when it is not FSDP."""
    if isinstance(strategy, FSDPStrategy):
        return strategy
    if strategy == "fsdp":
        return FSDPStrategy()
    if strategy == "fsdp_cpu_offload":
        return FSDPStrategy(cpu_offload=True)
    return None


def consolidate(folder: str, out: str) -> str:
    """One Lightning-format file (full weights, optimizer state by parameter name, and the checkpoint's loop and
    callback state) from the sharded checkpoint ``folder``; ``load_from_checkpoint`` opens it in a plain process.
    Runs anywhere, without a process group. Returns ``out``."""
    import tempfile

    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from lightray import storage
    from lightray.checkpoint import (
        CHECKPOINT_FILE,
        SHARDED,
        CheckpointError,
        load_checkpoint_file,
        save_checkpoint_file,
    )

    folder = os.fspath(folder)
    meta_path = os.path.join(folder, CHECKPOINT_FILE)
    if not os.path.isfile(meta_path) or not os.path.isfile(os.path.join(folder, ".metadata")):
        raise CheckpointError(
            f"{folder!r} is not a sharded checkpoint folder (it needs {CHECKPOINT_FILE} and the .metadata of "
            "torch.distributed.checkpoint): give one of the run's checkpoint folders"
        )
    checkpoint = load_checkpoint_file(meta_path, map_location="cpu")
    if not checkpoint.get(SHARDED):
        raise CheckpointError(f"{folder!r} holds a full checkpoint already: use {meta_path} as it is")
    with tempfile.TemporaryDirectory(prefix="lightray-consolidate-") as scratch:
        gathered = os.path.join(scratch, "full.pt")
        dcp_to_torch_save(folder, gathered)
        full = torch.load(gathered, map_location="cpu", weights_only=True)
    checkpoint.pop(SHARDED)
    checkpoint["state_dict"] = full["model"]
    checkpoint["optimizer_states"] = [full["optimizers"]]
    storage.makedirs(os.path.dirname(os.path.abspath(out)) or ".")
    save_checkpoint_file(checkpoint, out)
    return out

"""Strategy: where the loop's process-group, device, sampler and model-wrapping concerns live.

The loop never asks whether it runs locally or on Ray; it asks its strategy. ``SingleDeviceStrategy``
serves local runs (CPU or one GPU); the Ray backend supplies a DDP strategy for workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from lightray.core.module import LightningModule


class Strategy:
    """The base: one process, one device. Subclasses override what differs for several processes."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.root_device = torch.device(device)
        self.module: LightningModule | None = None
        self.model: nn.Module | None = None  # what the loop calls for steps (the module or a DDP wrapper)

    # ----------------------------------------------------------------- topology
    @property
    def world_size(self) -> int:
        return 1

    @property
    def planned_world_size(self) -> int:
        """The processes the run was planned for; fewer when an elastic run started short of workers."""
        return self.world_size

    @property
    def global_rank(self) -> int:
        return 0

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def node_rank(self) -> int:
        return 0

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    # ----------------------------------------------------------------- model
    def connect(self, module: LightningModule) -> None:
        """Move the module to this strategy's device; ``self.model`` is what the loop steps."""
        self.module = module
        module.to(self.root_device)
        self.model = module

    def shard_module(self) -> None:
        """Shard the module's parameters over the processes, before the optimizers exist (FSDP; no-op here)."""

    def wrap_model(self) -> None:
        """Wrap the model for distributed training, once the optimizers exist (no-op here)."""

    def after_backward(self) -> None:
        """After each backward pass, before ``on_after_backward`` (DDP: gradients of manual optimization)."""

    def training_step(self, *args: Any) -> Any:
        return self.module.training_step(*args)  # type: ignore[union-attr]

    def validation_step(self, *args: Any) -> Any:
        return self.module.validation_step(*args)  # type: ignore[union-attr]

    def test_step(self, *args: Any) -> Any:
        return self.module.test_step(*args)  # type: ignore[union-attr]

    def predict_step(self, *args: Any) -> Any:
        return self.module.predict_step(*args)  # type: ignore[union-attr]

    @contextlib.contextmanager
    def block_gradient_sync(self) -> Iterator[None]:
        """Skip the gradient all-reduce while accumulating (DDP's ``no_sync``)."""
        yield

    # ----------------------------------------------------------------- data and collectives
    def process_dataloader(self, loader: Iterable, shuffle: bool) -> Iterable:
        """Give the loader a distributed sampler where there are several processes (no-op here)."""
        return loader

    def reduce(self, tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
        """Reduce ``tensor`` over all processes with ``op`` (mean, sum, max, min)."""
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.unsqueeze(0)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def barrier(self, name: str | None = None) -> None:
        pass

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """Combine a per-rank decision: every rank must agree (``all``) or any rank suffices."""
        return decision

    def teardown(self) -> None:
        """Release what the strategy set up; the module stays where it is."""

    # ----------------------------------------------------------------- state (collectives where sharded)
    shards_state = False  # whether the state below is spread over the processes (FSDP)

    def module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """``module``'s full state dict (on rank 0 where the state is sharded)."""
        return module.state_dict()

    def load_module_state_dict(self, module: nn.Module, state_dict: dict[str, Any], strict: bool = True) -> None:
        module.load_state_dict(state_dict, strict=strict)

    def optimizer_state_dict(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_optimizer_state_dict(self, module: nn.Module, optimizer: torch.optim.Optimizer,
                                  state: dict[str, Any]) -> None:  # fmt: skip
        optimizer.load_state_dict(state)

    def checkpoint_module_state(self, module: nn.Module) -> dict[str, Any]:
        """What a checkpoint's ``state_dict`` holds (empty where ``save_checkpoint`` writes shards itself)."""
        return self.module_state_dict(module)

    def checkpoint_optimizer_state(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return self.optimizer_state_dict(module, optimizer)

    def load_sharded_checkpoint(self, folder: str, optimizers: list[torch.optim.Optimizer] | None) -> None:
        from lightray.checkpoint import CheckpointError

        raise CheckpointError(
            f"{folder!r} is a sharded (FSDP) checkpoint: resume it with strategy='fsdp' on Ray workers, or make one "
            f"file of it with `lightray consolidate {folder} <file>` to load it anywhere."
        )

    # ----------------------------------------------------------------- checkpoints
    run_dir: str | None = None  # where checkpoints must go, when the strategy decides (Ray: the run's folder)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str, metrics: dict[str, float], background: bool = False
    ) -> None:
        """Write ``checkpoint`` to ``path`` from rank 0, atomically (called on every rank)."""
        from lightray.checkpoint import save_checkpoint_file

        if self.is_global_zero:
            save_checkpoint_file(checkpoint, path, background=background)

    def remove_checkpoint(self, path: str) -> None:
        """Delete an outdated checkpoint (queued behind pending writes, so never before its successor)."""
        from lightray import storage

        if self.is_global_zero:
            storage.remove(path)


class SingleDeviceStrategy(Strategy):
    """Local, in-process training on one device (CPU or one GPU)."""

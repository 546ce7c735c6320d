"""RayFSDPStrategy: the loop's strategy inside Ray Train workers for ``strategy="fsdp"`` (torch's FSDP2).

Runs on every worker. The module is sharded when its stage sets it up (after ``configure_model``, before
``configure_optimizers``, so the optimizers hold the shards): each ``auto_wrap_policy`` submodule becomes a shard
unit with ``fully_shard``, and a root unit holds the rest. Steps run through the root, so its parameters are
gathered around each one. Checkpoints hold full state dicts gathered on rank 0 (Lightning's format), and load
into the shards on every rank.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from lightray.core.module import LightningModule
from lightray.strategies.fsdp import FSDPStrategy
from lightray.strategies.ray_ddp import RayDDPStrategy


class _Steps(nn.Module):
    """The root shard unit: calls the module's step methods by name, so FSDP gathers the root's parameters
    around every step (training, validation, test, predict)."""

    def __init__(self, module: LightningModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, step: str, *args: Any) -> Any:
        return getattr(self.module, step)(*args)


class RayFSDPStrategy(RayDDPStrategy):
    """FSDP2 on the Ray Train worker group; one process per worker, one device each."""

    shards_state = True

    def __init__(self, device: torch.device, options: FSDPStrategy, **kwargs: Any) -> None:
        super().__init__(device, **kwargs)
        self.options = options
        self._root: Any = None

    # ----------------------------------------------------------------- model
    def shard_module(self) -> None:
        """Shard the connected module (once per process): its policy units bottom-up, then the root."""
        from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

        if self._root is not None:
            return
        module = self.module
        assert module is not None
        options = self.options
        offload = CPUOffloadPolicy() if options.cpu_offload else OffloadPolicy()
        reshard = options.reshard_after_forward
        units = [m for m in module.modules() if m is not module and options.is_unit(m)]
        if options.auto_wrap_policy is not None and not units:
            from lightray.errors import MisconfigurationError

            raise MisconfigurationError(
                f"FSDPStrategy(auto_wrap_policy={options.auto_wrap_policy!r}) matches no submodule of "
                f"{type(module).__name__}: name the classes of its repeated blocks (e.g. {{TransformerBlock}}), "
                "or leave it out to shard the module as one unit."
            )
        for unit in reversed(units):  # children before their parents, as fully_shard requires
            fully_shard(unit, reshard_after_forward=reshard, offload_policy=offload)
        self._root = fully_shard(_Steps(module), reshard_after_forward=reshard, offload_policy=offload)
        self.model = self._root

    def wrap_model(self) -> None:
        """Nothing left to wrap: the module was sharded when its stage set it up."""

    def training_step(self, *args: Any) -> Any:
        return self._root("training_step", *args)

    def validation_step(self, *args: Any) -> Any:
        return self._root("validation_step", *args)

    def test_step(self, *args: Any) -> Any:
        return self._root("test_step", *args)

    def predict_step(self, *args: Any) -> Any:
        return self._root("predict_step", *args)

    @contextlib.contextmanager
    def block_gradient_sync(self) -> Iterator[None]:
        """While accumulating, keep full gradients locally and reduce-scatter them at the stepping batch."""
        self._root.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self._root.set_requires_gradient_sync(True)

    def teardown(self) -> None:
        """The module stays sharded (its full weights are gathered when asked for: ``module_state_dict``)."""

    # ----------------------------------------------------------------- state
    def module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """Collective: the full state dict on rank 0 (on the CPU), an empty one elsewhere."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(module, options=options)

    def load_module_state_dict(self, module: nn.Module, state_dict: dict[str, Any], strict: bool = True) -> None:
        """Collective: load a full state dict (every rank holds it) into the shards."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        options = StateDictOptions(full_state_dict=True, strict=strict)
        set_model_state_dict(module, state_dict, options=options)

    def optimizer_state_dict(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Collective: the optimizer's full state on rank 0, keyed by parameter names."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(module, optimizer, options=options)

    def load_optimizer_state_dict(self, module: nn.Module, optimizer: torch.optim.Optimizer,
                                  state: dict[str, Any]) -> None:  # fmt: skip
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(module, optimizer, state, options=options)

    def local_parameter_bytes(self) -> int:
        """The bytes of parameters this worker holds (its shards)."""
        total = 0
        for p in self.module.parameters():  # type: ignore[union-attr]
            local = p.to_local() if hasattr(p, "to_local") else p
            total += local.numel() * local.element_size()
        return total

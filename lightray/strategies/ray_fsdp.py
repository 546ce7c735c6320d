"""RayFSDPStrategy: the loop's strategy inside Ray Train workers for ``strategy="fsdp"`` (torch's FSDP2).

Runs on every worker. The module is sharded when its stage sets it up (after ``configure_model``, before
``configure_optimizers``, so the optimizers hold the shards): each ``auto_wrap_policy`` submodule becomes a shard
unit with ``fully_shard``, and a root unit holds the rest. Steps run through the root, so its parameters are
gathered around each one. Checkpoints are folders of shards written by every rank (``torch.distributed.checkpoint``)
plus rank 0's file of the rest of the state; with ``state_dict_type="full"``, one file of full state gathered on
rank 0 (Lightning's format).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from lightray.checkpoint import CHECKPOINT_FILE, SHARDED
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

    # ----------------------------------------------------------------- checkpoints
    @property
    def sharded(self) -> bool:
        return self.options.state_dict_type == "sharded"

    def checkpoint_module_state(self, module: nn.Module) -> dict[str, Any]:
        return {} if self.sharded else self.module_state_dict(module)  # sharded: written by save_checkpoint

    def checkpoint_optimizer_state(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return {} if self.sharded else self.optimizer_state_dict(module, optimizer)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str, metrics: dict[str, float], background: bool = False
    ) -> None:
        """Collective. Sharded: every rank writes its shards of the weights and optimizer state into a folder of
        its own, rank 0 adds the rest of ``checkpoint``, and every rank reports its folder to Ray Train, which
        persists them as one checkpoint folder ``<run dir>/<basename of path>`` (registered once all arrived)."""
        if not self.sharded:
            super().save_checkpoint(checkpoint, path, metrics, background)
            return
        import ray.train
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        module = self.module
        assert module is not None
        model_state, optimizer_state = get_state_dict(module, module.trainer.optimizers)
        name = os.path.basename(path.rstrip("/"))
        with tempfile.TemporaryDirectory(prefix="lightray-ckpt-") as folder:
            dcp.save({"model": model_state, "optimizers": optimizer_state}, checkpoint_id=folder)
            if self.is_global_zero:
                torch.save(
                    {**checkpoint, SHARDED: "torch.distributed.checkpoint"}, os.path.join(folder, CHECKPOINT_FILE)
                )
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder), checkpoint_dir_name=name)
        ray.train.report(metrics)  # returns once the controller took the checkpoint (see RayDDPStrategy)

    def load_sharded_checkpoint(self, folder: str, optimizers: list[torch.optim.Optimizer] | None) -> None:
        """Collective: load the shards of ``folder`` into the module (and ``optimizers``), resharding them when the
        checkpoint was written by another number of workers."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            get_model_state_dict,
            get_state_dict,
            set_model_state_dict,
            set_state_dict,
        )

        module = self.module
        assert module is not None
        if optimizers:
            model_state, optimizer_state = get_state_dict(module, optimizers)  # empty optimizer state gets made
            dcp.load({"model": model_state, "optimizers": optimizer_state}, checkpoint_id=folder)  # in place
            set_state_dict(module, optimizers, model_state_dict=model_state, optim_state_dict=optimizer_state)
        else:
            model_state = get_model_state_dict(module)
            dcp.load({"model": model_state}, checkpoint_id=folder)
            set_model_state_dict(module, model_state)

    def local_parameter_bytes(self) -> int:
        """The bytes of parameters this worker holds (its shards)."""
        total = 0
        for p in self.module.parameters():  # type: ignore[union-attr]
            local = p.to_local() if hasattr(p, "to_local") else p
            total += local.numel() * local.element_size()
        return total

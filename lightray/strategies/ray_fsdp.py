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
        """Shard the connected module (once per process): its policy units bottom-up, then the root; then give
        parameters created on the meta device (``configure_model``, ``init_module(empty_init=True)``) their
        memory, shard by shard."""
        from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

        if self._root is not None:
            return
        module = self.module
        assert module is not None
        options = self.options
        units = [m for m in module.modules() if m is not module and options.is_unit(m)]
        if options.auto_wrap_policy is not None and not units:
            from lightray.errors import MisconfigurationError

            raise MisconfigurationError(
                f"FSDPStrategy(auto_wrap_policy={options.auto_wrap_policy!r}) matches no submodule of "
                f"{type(module).__name__}: name the classes of its repeated blocks (e.g. {{TransformerBlock}}), "
                "or leave it out to shard the module as one unit."
            )
        checkpoint_activations(module, options)
        settings = {
            "reshard_after_forward": options.reshard_after_forward,
            "offload_policy": CPUOffloadPolicy() if options.cpu_offload else OffloadPolicy(),
            "mp_policy": mixed_precision_policy(module.trainer.precision, self.root_device),
        }
        for unit in reversed(units):  # children before their parents, as fully_shard requires
            fully_shard(unit, **settings)
        # The root unit gathers the rest of the parameters around every step. Manual optimization runs backward
        # and optimizer steps inside its step, so there the module itself is the root: its forward gathers them.
        self._root = fully_shard(_Steps(module) if module.automatic_optimization else module, **settings)
        self.model = self._root
        materialize(self._root, self.root_device, self.global_rank)
        if not self.sharded:
            self.check_full_state_fits(module, [])

    def connect(self, module: LightningModule) -> None:
        """Parameters on the meta device stay there until sharded (``materialize`` gives them memory)."""
        if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
            self.module = self.model = module
            return
        super().connect(module)

    def wrap_model(self) -> None:
        """Nothing left to wrap: the module was sharded when its stage set it up."""

    def training_step(self, *args: Any) -> Any:
        if isinstance(self._root, _Steps):
            return self._root("training_step", *args)
        try:
            return self.module.training_step(*args)  # type: ignore[union-attr]
        except RuntimeError as error:
            if "mixed torch.Tensor and DTensor" not in str(error):
                raise
            from lightray.errors import MisconfigurationError

            raise MisconfigurationError(
                "FSDP with manual optimization gathers parameters when a shard unit's forward runs: the "
                f"training_step of {type(self.module).__name__} used sharded parameters outside one. Call the module "
                "through self(...) (its forward), or name the submodules the step calls directly in auto_wrap_policy "
                "(e.g. {Generator, Discriminator})."
            ) from error

    def validation_step(self, *args: Any) -> Any:
        return self._step("validation_step", *args)

    def test_step(self, *args: Any) -> Any:
        return self._step("test_step", *args)

    def predict_step(self, *args: Any) -> Any:
        return self._step("predict_step", *args)

    def _step(self, name: str, *args: Any) -> Any:
        return self._root(name, *args) if isinstance(self._root, _Steps) else getattr(self.module, name)(*args)

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
        if self.sharded:
            return {}  # written by save_checkpoint
        optimizers = self.module.trainer.optimizers if self.module is not None else []
        self.check_full_state_fits(module, optimizers)  # before anything is gathered
        return self.module_state_dict(module)

    def checkpoint_optimizer_state(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return {} if self.sharded else self.optimizer_state_dict(module, optimizer)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str, metrics: dict[str, float], background: bool = False
    ) -> None:
        """Collective. Sharded: every rank writes its shards of the weights and optimizer state, rank 0 adds the
        rest of ``checkpoint``, and every rank reports the folder to Ray Train, which registers it as the checkpoint
        ``<run dir>/<basename of path>`` once all arrived. With local storage the shards are written straight into
        that folder (no copy); a save that dies half-way is never registered, so never resumed from. A folder of
        that name already there (``last.ckpt`` again) is replaced through a copy, as with other storage."""
        if not self.sharded:
            super().save_checkpoint(checkpoint, path, metrics, background)
            return
        import ray.train
        from torch.distributed.checkpoint.state_dict import get_state_dict

        module = self.module
        assert module is not None
        model_state, optimizer_state = get_state_dict(module, module.trainer.optimizers)
        state = {"model": model_state, "optimizers": optimizer_state}
        name = os.path.basename(path.rstrip("/"))
        destination = self._new_local_folder(name)
        if destination is not None:
            self._write_shards(state, checkpoint, destination)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(destination),
                             checkpoint_dir_name=name,
                             checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD)  # fmt: skip
        else:
            with tempfile.TemporaryDirectory(prefix="lightray-ckpt-") as folder:
                self._write_shards(state, checkpoint, folder)
                report = ray.train.Checkpoint.from_directory(folder)
                ray.train.report(metrics, checkpoint=report, checkpoint_dir_name=name)
        ray.train.report(metrics)  # returns once the controller took the checkpoint (see RayDDPStrategy)

    def _new_local_folder(self, name: str) -> str | None:
        """Collective: ``<run dir>/<name>`` when the run's storage is a local folder that every rank sees (one
        machine, or a shared file system) and that checkpoint folder does not exist yet."""
        from lightray import storage

        if self.run_dir is None or storage.is_remote(self.run_dir):
            return None
        run_dir = storage.local_path(self.run_dir)
        folder = os.path.abspath(os.path.join(run_dir, name))
        usable = os.path.isdir(run_dir) and (not self.is_global_zero or not os.path.exists(folder))
        return folder if self.reduce_boolean_decision(usable, all=True) else None

    def _write_shards(self, state: dict[str, Any], checkpoint: dict[str, Any], folder: str) -> None:
        """Every rank writes its shards into ``folder``; rank 0 adds the checkpoint's other state."""
        import torch.distributed.checkpoint as dcp

        os.makedirs(folder, exist_ok=True)
        dcp.save(state, checkpoint_id=folder)
        if self.is_global_zero:
            torch.save({**checkpoint, SHARDED: "torch.distributed.checkpoint"}, os.path.join(folder, CHECKPOINT_FILE))

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

    def check_full_state_fits(self, module: nn.Module, optimizers: list[torch.optim.Optimizer]) -> None:
        """Collective: refuse a full-state checkpoint (gathered on rank 0) larger than the memory budget."""
        needed = sum(t.numel() * t.element_size() for t in _tensors(module, optimizers))
        budget = self.options.full_state_memory_budget
        if budget is None:
            import psutil

            budget = self.broadcast(psutil.virtual_memory().available if self.is_global_zero else None)
        if needed > budget:
            from lightray.errors import MisconfigurationError

            raise MisconfigurationError(
                f"FSDPStrategy(state_dict_type='full'): a full checkpoint of this model holds {needed / 2**30:.2f} "
                f"GiB, gathered on rank 0, over the memory budget of {budget / 2**30:.2f} GiB "
                f"(full_state_memory_budget={self.options.full_state_memory_budget}; default: rank 0's available "
                "memory). Use state_dict_type='sharded' (the default: each worker writes its own shards), or raise "
                "the budget."
            )

    def local_parameter_bytes(self) -> int:
        """The bytes of parameters this worker holds (its shards)."""
        total = 0
        for p in self.module.parameters():  # type: ignore[union-attr]
            local = p.to_local() if hasattr(p, "to_local") else p
            total += local.numel() * local.element_size()
        return total


def _tensors(module: nn.Module, optimizers: list[torch.optim.Optimizer]) -> Iterator[torch.Tensor]:
    """The module's parameters and buffers and the optimizers' state tensors, at their full (global) sizes."""
    yield from module.parameters()
    yield from module.buffers()
    for optimizer in optimizers:
        for state in optimizer.state.values():
            yield from (value for value in state.values() if torch.is_tensor(value))


def checkpoint_activations(module: nn.Module, options: FSDPStrategy) -> None:
    """Recompute the activations of ``activation_checkpointing_policy``'s submodules in backward: their forward
    runs under ``torch.utils.checkpoint`` (inside their shard unit, so its gathered parameters serve both)."""
    import functools

    from torch.utils.checkpoint import checkpoint

    def recomputed(forward: Any, *args: Any, **kwargs: Any) -> Any:
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    chosen = [m for m in module.modules() if m is not module and options.is_checkpointed(m)]
    if options.activation_checkpointing_policy is not None and not chosen:
        from lightray.errors import MisconfigurationError

        raise MisconfigurationError(
            f"FSDPStrategy(activation_checkpointing_policy={options.activation_checkpointing_policy!r}) matches no "
            f"submodule of {type(module).__name__}: name the classes of its repeated blocks, or leave it out."
        )
    for submodule in chosen:
        submodule.forward = functools.partial(recomputed, submodule.forward)


def mixed_precision_policy(precision: str, device: torch.device) -> Any:
    """FSDP2's policy for the Trainer's ``precision``: parameters gathered in the low dtype of a ``-mixed``
    precision (the autocast of the precision plugin stays), gradients reduced in float32; none otherwise."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if not precision.endswith("-mixed"):
        return MixedPrecisionPolicy()
    if precision == "16-mixed" and device.type == "cuda":
        from lightray.errors import MisconfigurationError

        raise MisconfigurationError(
            "precision='16-mixed' with FSDP on GPUs needs a gradient scaler that agrees over the shards, which "
            "lightray does not have yet: use precision='bf16-mixed' (GPUs since Ampere), or strategy='ddp'."
        )
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def materialize(root: nn.Module, device: torch.device, rank: int) -> None:
    """Give meta-device parameters and buffers memory (each rank its shards) and initialise them with the
    submodules' ``reset_parameters()``, as Lightning does; names the submodules that have none."""
    tensors = [*root.parameters(), *root.buffers()]
    if not any(t.is_meta for t in tensors):
        return
    root.to_empty(device=device)
    uninitialised = set()
    # On CPU meshes DTensor's random ops draw each shard from the local generator: a per-rank seed keeps the
    # shards of one parameter from being copies of each other (GPU meshes draw distinct shards themselves).
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        if device.type == "cpu":
            torch.manual_seed(torch.initial_seed() + rank)
        for submodule in root.modules():
            own = [*submodule.parameters(recurse=False), *submodule.buffers(recurse=False)]
            if not own:
                continue
            reset = getattr(submodule, "reset_parameters", None)
            if callable(reset):
                reset()
            else:
                uninitialised.add(type(submodule).__name__)
    if uninitialised and rank == 0:
        import warnings

        warnings.warn(
            f"Parameters created on the meta device were given memory but not initialised in {sorted(uninitialised)}: "
            "these modules have no reset_parameters(); add one, or load weights (ckpt_path) before training.",
            stacklevel=2,
        )

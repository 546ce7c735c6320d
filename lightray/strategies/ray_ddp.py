"""RayDDPStrategy: the loop's strategy inside Ray Train workers (DDP over Ray's process group).

Runs on every worker. Ray Train has already set up the process group (gloo on CPU, NCCL on GPU)
and chosen the device; this strategy wraps the model for DDP, gives map-style loaders a
DistributedSampler, reduces across ranks, and saves checkpoints through ``ray.train.report``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from lightray import data
from lightray.checkpoint import CHECKPOINT_FILE
from lightray.core.module import LightningModule
from lightray.seed import global_seed
from lightray.strategies.strategy import Strategy
from lightray.utilities.rank_zero import rank_zero_only


class _TrainingStep(nn.Module):
    """Routes DDP's forward to ``training_step``, so DDP sees the step and synchronises its gradients."""

    def __init__(self, module: LightningModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any) -> Any:
        return self.module.training_step(*args)


class RayDDPStrategy(Strategy):
    """DDP on the Ray Train worker group; one process per worker, one device each."""

    def __init__(
        self,
        device: torch.device,
        run_dir: str | None = None,
        planned_world_size: int | None = None,
        ddp_kwargs: dict[str, Any] | None = None,
        sync_batchnorm: bool = False,
    ) -> None:
        import ray.train

        super().__init__(device)
        context = ray.train.get_context()
        self._rank = context.get_world_rank()
        self._world_size = context.get_world_size()
        self._local_rank = context.get_local_rank()
        self._node_rank = context.get_node_rank()
        rank_zero_only.rank = self._rank  # type: ignore[attr-defined]
        self.run_dir = run_dir
        self._planned_world_size = planned_world_size or self._world_size
        self.sync_batchnorm = sync_batchnorm  # BatchNorm statistics over all ranks (SyncBatchNorm)
        self.ddp_kwargs = dict(ddp_kwargs or {})  # DistributedDataParallel's options (find_unused_parameters, ...)
        self._ddp: nn.parallel.DistributedDataParallel | None = None

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def planned_world_size(self) -> int:
        return self._planned_world_size

    @property
    def global_rank(self) -> int:
        return self._rank

    @property
    def local_rank(self) -> int:
        return self._local_rank

    @property
    def node_rank(self) -> int:
        return self._node_rank

    # ----------------------------------------------------------------- model
    def wrap_model(self) -> None:
        if self._world_size < 2 or self._ddp is not None:
            return
        assert self.module is not None
        if self.sync_batchnorm:  # in place below the root; the parameters (and so the optimizers') stay the same
            nn.SyncBatchNorm.convert_sync_batchnorm(self.module)
        device_ids = [self.root_device.index] if self.root_device.type == "cuda" else None
        self._ddp = nn.parallel.DistributedDataParallel(
            _TrainingStep(self.module), device_ids=device_ids, **self.ddp_kwargs
        )
        self.model = self._ddp

    def training_step(self, *args: Any) -> Any:
        if self._ddp is not None and self.module.automatic_optimization:  # type: ignore[union-attr]
            return self._ddp(*args)
        # Manual optimization calls backward inside the step, which must not run inside DDP's forward (its
        # reducer would wait for a backward after it); ``after_backward`` averages the gradients instead.
        return super().training_step(*args)

    def after_backward(self) -> None:
        """Manual optimization: average the gradients over the ranks after each ``manual_backward``, as DDP's
        hooks would (averaging is linear, so several backwards before a step add up as under DDP)."""
        if self._ddp is None or self.module.automatic_optimization:  # type: ignore[union-attr]
            return
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]  # type: ignore[union-attr]
        for grad in grads:
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            grad.div_(self._world_size)

    @contextlib.contextmanager
    def block_gradient_sync(self) -> Iterator[None]:
        if self._ddp is None:
            yield
            return
        with self._ddp.no_sync():
            yield

    def teardown(self) -> None:
        self._ddp = None
        self.model = self.module

    # ----------------------------------------------------------------- data
    def process_dataloader(self, loader: Iterable, shuffle: bool) -> Iterable:
        """Give a map-style DataLoader a DistributedSampler (each rank reads its own part, reshuffled per epoch).

        Ray Data loaders come already split by rank; they only need CPUs left for Ray Data's tasks.
        """
        if isinstance(loader, data.RayDataLoader):
            import ray

            from lightray.ray_backend.placement import check_room_for_ray_data

            own = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
            check_room_for_ray_data(ray.cluster_resources().get("CPU", 0.0), self._world_size, own)
            return loader
        if self._world_size < 2 or type(loader) is not DataLoader or isinstance(loader.dataset, IterableDataset):
            return loader
        if isinstance(data.index_sampler(loader), DistributedSampler):
            return loader
        sampler: DistributedSampler = DistributedSampler(
            loader.dataset,
            num_replicas=self._world_size,
            rank=self._rank,
            shuffle=shuffle,
            seed=global_seed() or 0,
        )
        return data.rebuild_loader(loader, sampler=sampler)

    # ----------------------------------------------------------------- collectives
    def reduce(self, tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
        if self._world_size < 2:
            return tensor
        work = tensor.detach().clone().to(self._collective_device(), dtype=torch.float64)
        dist_op = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
                   "min": dist.ReduceOp.MIN}[op]  # fmt: skip
        dist.all_reduce(work, op=dist_op)
        if op == "mean":
            work /= self._world_size
        return work.to(tensor.device, dtype=tensor.dtype)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._world_size < 2:
            return tensor.unsqueeze(0)
        parts = [torch.empty_like(tensor) for _ in range(self._world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if self._world_size < 2:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self, name: str | None = None) -> None:
        if self._world_size > 1:
            dist.barrier()

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        if self._world_size < 2:
            return decision
        votes = self.reduce(torch.tensor(float(decision)), "sum")
        return bool(votes >= self._world_size) if all else bool(votes > 0)

    def _collective_device(self) -> torch.device:
        return self.root_device if dist.get_backend() == "nccl" else torch.device("cpu")

    # ----------------------------------------------------------------- checkpoints
    def remove_checkpoint(self, path: str) -> None:
        """Ray Train removes checkpoints itself, by the CheckpointConfig lightray derived from ModelCheckpoint."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str, metrics: dict[str, float], background: bool = False
    ) -> None:
        """Collective: rank 0 writes ``checkpoint`` and every rank reports it to Ray Train.

        Ray persists it as the directory ``<run dir>/<basename of path>`` holding ``checkpoint.ckpt``, and
        registers it, so a restarted worker group resumes from it.
        """
        import ray.train

        name = os.path.basename(path.rstrip("/"))
        with tempfile.TemporaryDirectory(prefix="lightray-ckpt-") as folder:
            report_checkpoint = None
            if self.is_global_zero:
                torch.save(checkpoint, os.path.join(folder, CHECKPOINT_FILE))
                report_checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=report_checkpoint, checkpoint_dir_name=name)
        # Ray Train hands reports to its controller through a queue of one: this second report returns only
        # once the controller has taken (and registered) the checkpoint, so a crash right after a save
        # still resumes from it instead of from the one before.
        ray.train.report(metrics)

"""Modules and callbacks for the Ray tests. They live in an importable module so workers can load them."""

from __future__ import annotations

import os
import signal

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightray as pl


class Regression(pl.LightningModule):
    """A small deterministic regression; records which samples each rank trained on."""

    def __init__(self, n: int = 64, batch_size: int = 4, record_dir: str | None = None, fail_on_rank: int = -1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)
        self.batch_size, self.record_dir, self.fail_on_rank = batch_size, record_dir, fail_on_rank

    def training_step(self, batch, batch_idx):
        if self.global_rank == self.fail_on_rank and self.global_step == 3:
            raise ValueError(f"bad batch on rank {self.global_rank}")
        idx, x, y = batch
        if self.record_dir:
            with open(os.path.join(self.record_dir, f"rank{self.global_rank}.txt"), "a") as f:
                f.write(" ".join(str(int(i)) for i in idx) + f" step={self.global_step}\n")
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        self.log("rank_mean", float(self.global_rank), sync_dist=True, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        _, x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def train_dataloader(self):
        data = TensorDataset(torch.arange(len(self.x)), self.x, self.y)
        return DataLoader(data, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.arange(16), self.x[:16], self.y[:16]), batch_size=4)


class KillOnce(pl.Callback):
    """SIGKILLs global rank ``rank`` once, after ``step`` optimizer steps (a marker file makes it once); with
    ``in_save=True`` inside the checkpoint save of that step instead (the other ranks are saving meanwhile)."""

    def __init__(self, marker: str, step: int, rank: int = 1, in_save: bool = False) -> None:
        self.marker, self.step, self.rank, self.in_save = marker, step, rank, in_save

    def on_train_batch_end(self, trainer, pl_module, *args):
        if not self.in_save:
            self._kill(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if self.in_save:
            self._kill(trainer)

    def _kill(self, trainer):
        if trainer.global_rank == self.rank and trainer.global_step == self.step and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


class RaiseOnce(pl.Callback):
    """Raises once after ``step`` steps, as a driver crash would stop a run (a marker file makes it once)."""

    def __init__(self, marker: str, step: int) -> None:
        self.marker, self.step = marker, step

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == self.step and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("interrupted on purpose")


class RecordNode(pl.Callback):
    """Writes each rank's Ray node id into ``folder``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_start(self, trainer, pl_module):
        import ray

        with open(os.path.join(self.folder, f"node-rank{trainer.global_rank}.txt"), "w") as f:
            f.write(ray.get_runtime_context().get_node_id())


class RecordWorldSize(pl.Callback):
    """Appends "world_size accumulate_grad_batches global_step" at each train start to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            with open(self.path, "a") as f:
                f.write(f"{trainer.world_size} {trainer.accumulate_grad_batches} {trainer.global_step}\n")


class KillAt(pl.Callback):
    """SIGKILLs worker ``rank`` of each (step, rank) once, after that many optimizer steps (marker files)."""

    def __init__(self, folder: str, kills: list[tuple[int, int]]) -> None:
        self.folder, self.kills = folder, kills

    def on_train_batch_end(self, trainer, pl_module, *args):
        for step, rank in self.kills:
            marker = os.path.join(self.folder, f"killed-{step}-{rank}")
            if trainer.global_rank == rank and trainer.global_step == step and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)


class UnusedBranch(Regression):
    """A BatchNorm in front and a head that training never uses (DDP needs ``find_unused_parameters=True``);
    rank 0 writes what DDP, the BatchNorm and the loader became on the worker."""

    def __init__(self, record: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = nn.Sequential(nn.BatchNorm1d(4), *self.net)
        self.unused_head = nn.Linear(16, 1)
        self.record = record

    def on_train_start(self) -> None:
        ddp = self.trainer.strategy.model
        if self.global_rank == 0:
            with open(self.record, "w") as f:
                f.write(f"{type(ddp).__name__} find_unused_parameters={ddp.find_unused_parameters} "
                        f"{type(self.net[0]).__name__} batches={self.trainer.num_training_batches}")  # fmt: skip


class TwoSources(Regression):
    """Reads two loaders at once (a dict from ``train_dataloader``) and keeps its learning rate in ``lr`` (for
    ``LearningRateFinder``); logs the spread of the optimizer's rate over the ranks."""

    def __init__(self) -> None:
        super().__init__()
        self.lr = 0.05

    def training_step(self, batch, batch_idx):
        _, x, y = batch["a"]
        _, x2, y2 = batch["b"]
        loss = nn.functional.mse_loss(self.net(x), y) + nn.functional.mse_loss(self.net(x2), y2)
        self.log("train_loss", loss)
        rate = torch.tensor(self.trainer.optimizers[0].param_groups[0]["lr"])
        rates = self.trainer.strategy.all_gather(rate)
        self.log("lr_spread", float(rates.max() - rates.min()), on_step=False, on_epoch=True, reduce_fx="max")
        self.log("lr_used", float(rate), on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        data = TensorDataset(torch.arange(len(self.x)), self.x, self.y)
        half = torch.utils.data.Subset(data, range(32))
        return {"a": DataLoader(data, batch_size=4, shuffle=True), "b": DataLoader(half, batch_size=4)}


class Block(nn.Module):
    """A transformer-like block: attention and an MLP, each with a residual and a LayerNorm."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, num_heads=4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyTransformer(pl.LightningModule):
    """Next-token prediction on arithmetic sequences with a few Blocks; logs its loss every step and the bytes of
    the parameters this worker holds (its shards under FSDP)."""

    def __init__(self, vocab: int = 16, width: int = 32, depth: int = 3, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList([Block(width) for _ in range(depth)])
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def training_step(self, batch, batch_idx):
        (tokens,) = batch
        saved = []  # the bytes autograd keeps from forward for backward (less with activation checkpointing)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):  # fmt: skip
            logits = self(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1))
        self.log("train_loss", loss, sync_dist=True)
        held = sum(
            (p.to_local() if hasattr(p, "to_local") else p).numel() * p.element_size() for p in self.parameters()
        )
        self.log("param_bytes", float(held), on_step=False, on_epoch=True, reduce_fx="max")
        self.log("saved_bytes", float(sum(saved)), on_step=False, on_epoch=True, reduce_fx="max")
        self.log("computes_in_bf16", float(self.head.weight.dtype == torch.bfloat16), on_step=False, on_epoch=True)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        (tokens,) = batch
        logits = self(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1))
        self.log("val_loss", loss, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    def _sequences(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        start, step = torch.randint(0, 16, (n, 1), generator=g), torch.randint(1, 4, (n, 1), generator=g)
        return (start + step * torch.arange(12)) % self.hparams.vocab

    def train_dataloader(self):
        return DataLoader(TensorDataset(self._sequences(64, 0)), batch_size=8, shuffle=True)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self._sequences(16, 1)), batch_size=8)


class ManualTinyTransformer(TinyTransformer):
    """Manual optimization as Lightning's GAN-style examples write it: two optimizers (the blocks; the rest), a
    clipped backward, a scheduler stepped by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        blocks_opt, rest_opt = self.optimizers()
        (tokens,) = batch
        for optimizer in (blocks_opt, rest_opt):  # one update of each part, the other part frozen meanwhile
            self.toggle_optimizer(optimizer)
            logits = self(tokens[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1))
            optimizer.zero_grad()
            self.manual_backward(loss)
            self.clip_gradients(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
            optimizer.step()
            self.untoggle_optimizer(optimizer)
            self.log("train_loss" if optimizer is blocks_opt else "rest_loss", loss, sync_dist=True)
        self.lr_schedulers().step()

    def configure_optimizers(self):
        rest = [p for name, p in self.named_parameters() if not name.startswith("blocks.")]
        blocks_opt = torch.optim.AdamW(self.blocks.parameters(), lr=3e-3)
        schedule = torch.optim.lr_scheduler.StepLR(blocks_opt, step_size=2, gamma=0.5)
        return [blocks_opt, torch.optim.SGD(rest, lr=0.05)], [schedule]


class MetaInitTransformer(TinyTransformer):
    """Layers without memory until the strategy gives each worker its shards: built in ``configure_model`` on the
    meta device, as Lightning's FSDP examples do for large models, or (``in_init=True``) in ``__init__`` under
    ``trainer.init_module(empty_init=True)``."""

    def __init__(self, in_init: bool = False) -> None:
        pl.LightningModule.__init__(self)
        self.save_hyperparameters({"vocab": 16, "width": 32, "depth": 2, "lr": 3e-3})
        self.embed = None
        if in_init:
            self._build()

    def configure_model(self):
        if self.embed is None:
            with torch.device("meta"):
                self._build()

    def _build(self):
        self.embed = nn.Embedding(16, 32)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)) for _ in range(2)])
        self.head = nn.Linear(32, 16)

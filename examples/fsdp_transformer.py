"""A small GPT-style language model trained with sharded data parallelism (FSDP) on Ray Train workers.

Each worker holds a shard of every parameter, gradient and optimizer state; each transformer block is its own
shard unit (``auto_wrap_policy={Block}``), gathered only while it computes. Checkpoints are sharded folders that
a rerun resumes from (on any number of workers); ``lightray consolidate <folder> model.ckpt`` makes one file.

    python examples/fsdp_transformer.py --synthetic --num-workers 2      # generated text, CPU workers
    python examples/fsdp_transformer.py --text corpus.txt --num-workers 8 --use-gpu --precision bf16-mixed \
        --empty-init --activation-checkpointing

Runs on the driver; the training runs on the workers.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import lightray as pl
from lightray.strategies import FSDPStrategy


class Block(nn.Module):
    """Pre-norm causal self-attention and an MLP, each with a residual. Built of layers that have
    ``reset_parameters()``, so it can be created on the meta device and initialised shard by shard."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.norm2(x))


class LanguageModel(pl.LightningModule):
    def __init__(self, vocab: int = 256, width: int = 128, depth: int = 4, heads: int = 4, context: int = 64,
                 lr: float = 1e-3) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context, width)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position.weight[: tokens.size(1)]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def _loss(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = self(tokens[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.01)


class Windows(Dataset):
    """Windows of ``context + 1`` bytes of a text (bytes are the vocabulary)."""

    def __init__(self, data: bytes, context: int) -> None:
        self.data, self.context = torch.tensor(list(data), dtype=torch.long), context

    def __len__(self) -> int:
        return max(0, (len(self.data) - 1) // self.context)

    def __getitem__(self, index: int) -> torch.Tensor:
        start = index * self.context
        return self.data[start : start + self.context + 1]


def synthetic_text(n_bytes: int) -> bytes:
    """Generated text with structure to learn: counting sentences, no download."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    sentences, i = [], 0
    while sum(len(s) for s in sentences) < n_bytes:
        sentences.append(f"{words[i % 10]} comes before {words[(i + 1) % 10]}. ")
        i += 1
    return "".join(sentences).encode()[:n_bytes]


def main(argv: list[str] | None = None) -> pl.Trainer:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", action="store_true", help="generated text instead of --text")
    parser.add_argument("--text", help="a text file to learn")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument(
        "--empty-init",
        action="store_true",
        help="create the model on the meta device: each worker allocates only its shards",
    )
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute blocks in backward")
    parser.add_argument("--storage-path", default=None, help="where the sharded checkpoints go (folder or URI)")
    parser.add_argument("--default-root-dir", default=None)
    args = parser.parse_args(argv)
    if not args.synthetic and not args.text:
        parser.error("give --text FILE, or --synthetic for generated text")
    if args.synthetic:
        text = synthetic_text(40_000)
    else:
        with open(args.text, "rb") as f:
            text = f.read()
    context = 64
    split = int(len(text) * 0.9)
    train = DataLoader(Windows(text[:split], context), batch_size=16, shuffle=True)
    val = DataLoader(Windows(text[split:], context), batch_size=16)

    pl.seed_everything(0)
    strategy = FSDPStrategy(
        auto_wrap_policy={Block}, activation_checkpointing_policy={Block} if args.activation_checkpointing else None
    )
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        precision=args.precision,
        strategy=strategy,
        storage_path=args.storage_path or args.default_root_dir,
        name="fsdp-transformer",
        default_root_dir=args.default_root_dir,
        log_every_n_steps=10,
    )
    with trainer.init_module(empty_init=args.empty_init):
        model = LanguageModel(width=args.width, depth=args.depth, context=context)
    trainer.fit(model, train, val)
    print(f"val_loss: {float(trainer.callback_metrics['val_loss']):.4f}")
    print(f"checkpoint: {trainer.checkpoint_callback.best_model_path}")
    return trainer


if __name__ == "__main__":
    main()

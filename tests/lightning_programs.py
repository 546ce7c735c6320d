"""Small programs written the way Lightning's own examples are, runnable on lightray and on Lightning.

Each program is a function ``program(pl, tmp)`` taking the framework package (``lightray`` or
``pytorch_lightning``) and a fresh folder. It builds its classes from that ``pl``, seeds with
``pl.seed_everything``, trains on generated tensors (CPU, a few dozen steps), and returns a dict of
plain values (floats, ints, strings, lists, dicts, tensors) that ``test_same_results`` compares between
the two frameworks.

Data that a program does not mean to exercise RNG order with is drawn from an explicitly seeded
``torch.Generator``, so both frameworks see identical inputs. Where RNG order *is* the point
(shuffled loaders, dropout, data drawn inside ``train_dataloader``, noise drawn in ``training_step``)
the global RNG is used on purpose, seeded by ``pl.seed_everything``.

Every returned dict has ``losses`` (per training step, recorded in ``training_step``), ``weights``
(final ``state_dict`` clones), ``global_step``, ``current_epoch`` and ``metrics`` (``callback_metrics``
as ``{name: float}`` after each stage); some add ``best_checkpoint``, ``test_results``, ``csv``, and
program-specific entries.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

COMMON = dict(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)


def _sub(pl: Any, name: str) -> Any:
    """``pl.callbacks`` / ``pl.loggers``, imported as scripts do (``from pytorch_lightning.loggers import ...``)."""
    return importlib.import_module(f"{pl.__name__}.{name}")


def _floats(metrics: Any) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _results(results: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [_floats(r) for r in results]


def _basename(path: str | None) -> str | None:
    return os.path.basename(path) if path else path


def _listing(folder: str | os.PathLike) -> list[str]:
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _read_csv_logger(log_dir: str) -> dict[str, Any]:
    """``metrics.csv`` as header + rows of ``{column: float | None}``, and ``hparams.yaml`` if written."""
    out: dict[str, Any] = {"header": None, "rows": None, "hparams": None}
    path = os.path.join(log_dir, "metrics.csv")
    if os.path.isfile(path):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            out["header"] = list(reader.fieldnames or [])
            out["rows"] = [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in reader]
    hparams = os.path.join(log_dir, "hparams.yaml")
    if os.path.isfile(hparams):
        with open(hparams) as f:
            out["hparams"] = yaml.safe_load(f)
    return out


# the top-level keys Lightning 2.x writes into a checkpoint, and the keys of ModelCheckpoint's saved state
# (lightray may add its own besides; only Lightning's are compared)
LIGHTNING_CHECKPOINT_KEYS = (
    "epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "callbacks",
    "optimizer_states", "lr_schedulers", "hparams_name", "hyper_parameters",
)  # fmt: skip
MODEL_CHECKPOINT_STATE_KEYS = (
    "monitor", "best_model_score", "best_model_path", "current_score", "dirpath", "best_k_models",
    "kth_best_model_path", "kth_value", "last_model_path",
)  # fmt: skip


def _plain_state(value: Any) -> Any:
    """A callback's checkpoint state with paths reduced to file names and tensors to floats."""
    if isinstance(value, dict):
        return {_plain_state(k): _plain_state(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return float(value)
    if isinstance(value, str) and os.sep in value:
        return os.path.basename(value)
    return value


def _checkpoint_summary(path: str) -> dict[str, Any]:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    return {
        "lightning_keys": [k for k in LIGHTNING_CHECKPOINT_KEYS if k in saved],
        "epoch": saved.get("epoch"),
        "global_step": saved.get("global_step"),
        "hparams_name": saved.get("hparams_name"),
        "hyper_parameters": dict(saved.get("hyper_parameters", {})),
        "state_dict": dict(saved.get("state_dict", {})),
        "optimizer_states": [
            {"state": opt["state"], "param_groups": opt["param_groups"]} for opt in saved.get("optimizer_states", [])
        ],
        "callbacks": {
            name: {k: _plain_state(v) for k, v in state.items() if k in MODEL_CHECKPOINT_STATE_KEYS}
            for name, state in saved.get("callbacks", {}).items()
        },
    }


def _start(pl: Any, seed: int) -> None:
    torch.set_num_threads(1)
    pl.seed_everything(seed)


# --------------------------------------------------------------------------------------------------
# 1. autoencoder: plain main, train + val loaders, sanity check on, dropout, CSVLogger
# --------------------------------------------------------------------------------------------------
def autoencoder(pl: Any, tmp: Path) -> dict[str, Any]:
    _start(pl, 42)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(100, 1, 4, 4, generator=g)
    labels = torch.randint(0, 10, (100,), generator=g)
    train_set = TensorDataset(images[:70], labels[:70])  # 9 batches of 8, the last one of 6
    val_set = TensorDataset(images[70:], labels[70:])  # 30: the last val batch is short too

    class LitAutoEncoder(pl.LightningModule):
        def __init__(self, hidden: int = 12, latent: int = 3, lr: float = 1e-2) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.encoder = nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, latent))
            self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 16))
            self.losses: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(x)

        def _loss(self, batch: Any) -> torch.Tensor:
            x, _ = batch
            x = x.view(x.size(0), -1)
            return F.mse_loss(self.decoder(self.encoder(x)), x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = self._loss(batch)
            self.log("train_loss", loss)
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", self._loss(batch), prog_bar=True)

        def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, _ = batch
            return self.decoder(self.encoder(x.view(x.size(0), -1)))

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # main(): what a user script does after `if __name__ == "__main__":`
    model = LitAutoEncoder()
    train_loader = DataLoader(train_set, batch_size=8, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=8)
    logger = _sub(pl, "loggers").CSVLogger(save_dir=str(tmp), name="logs")
    trainer = pl.Trainer(max_epochs=3, logger=logger, log_every_n_steps=2, default_root_dir=str(tmp), **COMMON)
    trainer.fit(model, train_loader, val_loader)
    out: dict[str, Any] = {
        "losses": list(model.losses),
        "weights": _weights(model),
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "metrics": {"fit": _floats(trainer.callback_metrics)},
        "logged_metrics": _floats(trainer.logged_metrics),
        "progress_bar_metrics": _floats(trainer.progress_bar_metrics),
        "best_checkpoint": _basename(trainer.checkpoint_callback.best_model_path),
    }
    out["validate_results"] = _results(trainer.validate(model, val_loader))
    out["metrics"]["validate"] = _floats(trainer.callback_metrics)
    out["predictions"] = torch.cat(trainer.predict(model, val_loader))
    out["metrics"]["predict"] = _floats(trainer.callback_metrics)
    out["csv"] = _read_csv_logger(logger.log_dir)
    return out


# --------------------------------------------------------------------------------------------------
# 2. image classifier: LightningDataModule, two ModelCheckpoints, test with ckpt_path="best"
# --------------------------------------------------------------------------------------------------
def image_classifier(pl: Any, tmp: Path) -> dict[str, Any]:
    from torchmetrics.classification import MulticlassAccuracy

    _start(pl, 7)
    callbacks = _sub(pl, "callbacks")

    class RandomImagesDataModule(pl.LightningDataModule):
        """10 classes of noisy 1x8x8 templates; prepare_data "downloads" them to a file, setup splits."""

        def __init__(self, data_dir: str, batch_size: int = 16) -> None:
            super().__init__()
            self.data_dir = data_dir
            self.batch_size = batch_size

        @property
        def path(self) -> str:
            return os.path.join(self.data_dir, "images.pt")

        def prepare_data(self) -> None:
            if os.path.exists(self.path):
                return
            g = torch.Generator().manual_seed(123)
            templates = torch.randn(10, 1, 8, 8, generator=g)
            labels = torch.randint(0, 10, (250,), generator=g)
            images = templates[labels] + 0.8 * torch.randn(250, 1, 8, 8, generator=g)
            os.makedirs(self.data_dir, exist_ok=True)
            torch.save({"images": images, "labels": labels}, self.path)

        def setup(self, stage: str) -> None:
            data = torch.load(self.path)
            full = TensorDataset(data["images"], data["labels"])
            fit_set, test_set = TensorDataset(*full[:200]), TensorDataset(*full[200:])
            if stage == "fit":
                # 150 / 50 with batches of 16: the last train and val batches are short
                self.train_set, self.val_set = random_split(
                    fit_set, [150, 50], generator=torch.Generator().manual_seed(42)
                )
            if stage == "test":
                self.test_set = test_set

        def train_dataloader(self) -> DataLoader:
            return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(self.val_set, batch_size=self.batch_size)

        def test_dataloader(self) -> DataLoader:
            return DataLoader(self.test_set, batch_size=self.batch_size)

    class LitClassifier(pl.LightningModule):
        def __init__(self, num_classes: int = 10, lr: float = 3e-2) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Dropout(0.25), nn.Linear(16 * 2 * 2, num_classes),
            )  # fmt: skip
            self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
            self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
            self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
            self.losses: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            logits = self(x)
            loss = F.cross_entropy(logits, y)
            self.train_acc(logits, y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            self.log("train_acc", self.train_acc, on_step=True, on_epoch=True)
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            logits = self(x)
            self.val_acc.update(logits, y)
            self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True)
            self.log("val_acc", self.val_acc, prog_bar=True)

        def test_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            logits = self(x)
            self.test_acc(logits, y)
            self.log("test_loss", F.cross_entropy(logits, y))
            self.log("test_acc", self.test_acc)

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    dm = RandomImagesDataModule(str(tmp / "data"))
    model = LitClassifier()
    best_acc = callbacks.ModelCheckpoint(
        monitor="val_acc", mode="max", save_top_k=1, filename="best-{epoch:02d}-{val_acc:.3f}"
    )
    best_train = callbacks.ModelCheckpoint(
        monitor="train_loss_epoch", save_top_k=1, filename="train-{epoch}-{train_loss_epoch:.4f}"
    )
    trainer = pl.Trainer(
        max_epochs=4, callbacks=[best_acc, best_train], logger=False, default_root_dir=str(tmp), **COMMON
    )
    trainer.fit(model, datamodule=dm)
    out: dict[str, Any] = {
        "losses": list(model.losses),
        "weights": _weights(model),
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "metrics": {"fit": _floats(trainer.callback_metrics)},
        "progress_bar_metrics": _floats(trainer.progress_bar_metrics),
        "best_checkpoint": _basename(trainer.checkpoint_callback.best_model_path),
        "checkpoints": [
            {
                "best": _basename(cb.best_model_path),
                "score": None if cb.best_model_score is None else float(cb.best_model_score),
                "last": _basename(cb.last_model_path) or None,
            }
            for cb in (best_acc, best_train)
        ],
        "checkpoint_files": _listing(tmp / "checkpoints"),
    }
    best_path = trainer.checkpoint_callback.best_model_path
    out["best_checkpoint_contents"] = _checkpoint_summary(best_path)
    restored = LitClassifier.load_from_checkpoint(best_path)
    out["restored"] = {"hparams": dict(restored.hparams), "weights": _weights(restored)}
    out["test_results"] = _results(trainer.test(datamodule=dm, ckpt_path="best"))
    out["metrics"]["test"] = _floats(trainer.callback_metrics)
    out["weights_after_test"] = _weights(model)
    return out


# --------------------------------------------------------------------------------------------------
# 3. transformer language model: data drawn inside train_dataloader, clipping, per-step scheduler
# --------------------------------------------------------------------------------------------------
VOCAB, SEQ = 16, 8


def _arithmetic_sequences(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Token sequences ``start + t * stride (mod VOCAB)``: learnable from the previous two tokens."""
    start = torch.randint(0, VOCAB, (n, 1), generator=generator)
    stride = torch.randint(1, 4, (n, 1), generator=generator)
    return (start + stride * torch.arange(SEQ + 1)) % VOCAB


def transformer_lm(pl: Any, tmp: Path) -> dict[str, Any]:
    _start(pl, 1234)

    class TinyTransformerLM(pl.LightningModule):
        def __init__(self, d_model: int = 16, nhead: int = 2, num_layers: int = 2, lr: float = 3e-3) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.embed = nn.Embedding(VOCAB, d_model)
            self.pos = nn.Parameter(0.02 * torch.randn(SEQ, d_model))
            layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=32, dropout=0.1, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
            self.head = nn.Linear(d_model, VOCAB)
            self.losses: list[float] = []
            self.lrs: list[float] = []
            self.loads = 0

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            length = tokens.size(1)
            mask = nn.Transformer.generate_square_subsequent_mask(length)
            h = self.encoder(self.embed(tokens) + self.pos[:length], mask=mask, is_causal=True)
            return self.head(h)

        def _loss(self, batch: Any) -> torch.Tensor:
            (tokens,) = batch
            logits = self(tokens[:, :-1])
            return F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = self._loss(batch)
            self.log("train_loss", loss, prog_bar=True)
            self.losses.append(loss.item())
            self.lrs.append(self.optimizers().param_groups[0]["lr"])
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            loss = self._loss(batch)
            self.log("val_loss", loss)
            self.log("val_ppl", torch.exp(loss))

        def train_dataloader(self) -> DataLoader:
            # drawn from the global RNG at whatever moment the trainer asks for this loader (every epoch:
            # reload_dataloaders_every_n_epochs=1); 60 sequences, so the last batch of 8 is short
            self.loads += 1
            return DataLoader(TensorDataset(_arithmetic_sequences(60)), batch_size=8, shuffle=True)

        def val_dataloader(self) -> DataLoader:
            tokens = _arithmetic_sequences(32, torch.Generator().manual_seed(5))
            return DataLoader(TensorDataset(tokens), batch_size=16)

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.01)
            warmup_then_decay = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: min(1.0, (step + 1) / 4) * math.exp(-0.02 * step)
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup_then_decay, "interval": "step"}}

    model = TinyTransformerLM()
    trainer = pl.Trainer(
        max_epochs=3,
        reload_dataloaders_every_n_epochs=1,
        gradient_clip_val=0.5,
        logger=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp),
        **COMMON,
    )
    trainer.fit(model)
    return {
        "losses": list(model.losses),
        "lrs_seen_in_training_step": list(model.lrs),
        "final_lr": trainer.optimizers[0].param_groups[0]["lr"],
        "train_dataloader_calls": model.loads,
        "weights": _weights(model),
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "metrics": {"fit": _floats(trainer.callback_metrics)},
    }


# --------------------------------------------------------------------------------------------------
# 4. LSTM sequence classification: val_check_interval=0.5, EarlyStopping, ModelCheckpoint, CSVLogger
# --------------------------------------------------------------------------------------------------
def lstm_early_stopping(pl: Any, tmp: Path) -> dict[str, Any]:
    _start(pl, 3)
    callbacks = _sub(pl, "callbacks")
    g = torch.Generator().manual_seed(11)
    x = torch.randn(96, 10, 3, generator=g)
    y = (x[:, :, 0].sum(dim=1) > 0).long()
    y[64:][torch.rand(32, generator=g) < 0.4] ^= 1  # noisy validation labels: val_loss turns up soon
    train_set, val_set = TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])

    class LSTMClassifier(pl.LightningModule):
        def __init__(self, hidden: int = 12, lr: float = 2e-2) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.lstm = nn.LSTM(3, hidden, batch_first=True)
            self.dropout = nn.Dropout(0.2)
            self.fc = nn.Linear(hidden, 2)
            self.losses: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return self.fc(self.dropout(out[:, -1]))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            logits = self(x)
            self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True)
            self.log("val_acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    model = LSTMClassifier()
    early_stopping = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    checkpoint = callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=1)
    logger = _sub(pl, "loggers").CSVLogger(save_dir=str(tmp), name="logs")
    trainer = pl.Trainer(
        max_epochs=12,
        val_check_interval=0.5,
        callbacks=[early_stopping, checkpoint],
        logger=logger,
        log_every_n_steps=2,
        default_root_dir=str(tmp),
        **COMMON,
    )
    trainer.fit(model, DataLoader(train_set, batch_size=8, shuffle=True), DataLoader(val_set, batch_size=16))
    return {
        "losses": list(model.losses),
        "weights": _weights(model),
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "metrics": {"fit": _floats(trainer.callback_metrics)},
        "early_stopping": {
            "stopped_epoch": early_stopping.stopped_epoch,
            "wait_count": early_stopping.wait_count,
            "best_score": float(early_stopping.best_score),
            "should_stop": trainer.should_stop,
        },
        "best_checkpoint": _basename(trainer.checkpoint_callback.best_model_path),
        "best_score": float(checkpoint.best_model_score),
        "csv": _read_csv_logger(logger.log_dir),
    }


# --------------------------------------------------------------------------------------------------
# 5. GAN: manual optimization, two optimizers, toggle/untoggle, noise drawn in training_step
# --------------------------------------------------------------------------------------------------
def gan_manual_optimization(pl: Any, tmp: Path) -> dict[str, Any]:
    _start(pl, 2024)
    g = torch.Generator().manual_seed(99)
    centers = torch.tensor([[2.0] * 8, [-2.0] * 8])
    real = centers[torch.randint(0, 2, (64,), generator=g)] + 0.3 * torch.randn(64, 8, generator=g)

    class GAN(pl.LightningModule):
        def __init__(self, latent_dim: int = 4, lr: float = 2e-3, b1: float = 0.5, b2: float = 0.999) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.automatic_optimization = False
            self.generator = nn.Sequential(nn.Linear(latent_dim, 16), nn.LeakyReLU(0.2), nn.Linear(16, 8))
            self.discriminator = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Dropout(0.1), nn.Linear(16, 1))
            self.losses: list[dict[str, float]] = []
            self.frozen_while_generating: list[list[bool]] = []

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.generator(z)

        def training_step(self, batch: Any, batch_idx: int) -> None:
            (imgs,) = batch
            opt_g, opt_d = self.optimizers()
            z = torch.randn(imgs.shape[0], self.hparams.latent_dim).type_as(imgs)
            valid = torch.ones(imgs.size(0), 1).type_as(imgs)
            fake = torch.zeros(imgs.size(0), 1).type_as(imgs)

            # train generator
            self.toggle_optimizer(opt_g)
            self.frozen_while_generating.append([p.requires_grad for p in self.discriminator.parameters()])
            g_loss = F.binary_cross_entropy_with_logits(self.discriminator(self(z)), valid)
            self.log("g_loss", g_loss, prog_bar=True)
            self.manual_backward(g_loss)
            self.clip_gradients(opt_g, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
            opt_g.step()
            opt_g.zero_grad()
            self.untoggle_optimizer(opt_g)

            # train discriminator
            self.toggle_optimizer(opt_d)
            real_loss = F.binary_cross_entropy_with_logits(self.discriminator(imgs), valid)
            fake_loss = F.binary_cross_entropy_with_logits(self.discriminator(self(z).detach()), fake)
            d_loss = (real_loss + fake_loss) / 2
            self.log("d_loss", d_loss, prog_bar=True, on_step=True, on_epoch=True)
            self.manual_backward(d_loss)
            self.clip_gradients(opt_d, gradient_clip_val=0.1, gradient_clip_algorithm="value")
            opt_d.step()
            opt_d.zero_grad()
            self.untoggle_optimizer(opt_d)
            self.losses.append({"g_loss": g_loss.item(), "d_loss": d_loss.item()})

        def on_train_epoch_end(self) -> None:
            sched_g, sched_d = self.lr_schedulers()
            sched_g.step()
            sched_d.step()

        def configure_optimizers(self) -> Any:
            betas = (self.hparams.b1, self.hparams.b2)
            opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
            opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
            sched_g = torch.optim.lr_scheduler.StepLR(opt_g, step_size=1, gamma=0.7)
            sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, gamma=0.9)
            return [opt_g, opt_d], [sched_g, sched_d]

    model = GAN()
    trainer = pl.Trainer(max_epochs=3, logger=False, default_root_dir=str(tmp), **COMMON)
    trainer.fit(model, DataLoader(TensorDataset(real), batch_size=16, shuffle=True))
    return {
        "losses": list(model.losses),
        "frozen_while_generating": list(model.frozen_while_generating),
        "requires_grad_after_fit": {n: p.requires_grad for n, p in model.named_parameters()},
        "final_lrs": [opt.param_groups[0]["lr"] for opt in trainer.optimizers],
        "weights": _weights(model),
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "metrics": {"fit": _floats(trainer.callback_metrics)},
        "best_checkpoint": _basename(trainer.checkpoint_callback.best_model_path),
    }


# --------------------------------------------------------------------------------------------------
# 6. fine-tune a frozen "pretrained" backbone (BatchNorm + Dropout kept in eval mode)
# --------------------------------------------------------------------------------------------------
def _pretrained_backbone() -> nn.Module:
    """A backbone whose weights and BatchNorm statistics come from a fixed seed, not the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        backbone = nn.Sequential(
            nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 8), nn.ReLU()
        )
        with torch.no_grad():  # "pretraining": running statistics that differ from the init
            for _ in range(3):
                backbone(2.0 * torch.randn(32, 6) + 1.0)
    return backbone


def frozen_backbone_finetune(pl: Any, tmp: Path) -> dict[str, Any]:
    _start(pl, 5)
    g = torch.Generator().manual_seed(17)
    x = 2.0 * torch.randn(112, 6, generator=g) + 1.0
    y = (x[:, 0] > 1.0).long() + (x[:, 1] > 1.0).long()  # 3 classes
    train_set, val_set, test_set = (TensorDataset(x[a:b], y[a:b]) for a, b in ((0, 64), (64, 88), (88, 112)))

    class FineTuner(pl.LightningModule):
        def __init__(self, lr: float = 0.05) -> None:
            super().__init__()
            self.backbone = _pretrained_backbone()
            self.backbone.requires_grad_(False)
            self.backbone.eval()
            self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8, 3))
            self.lr = lr
            self.losses: list[float] = []
            self.backbone_training: list[bool] = []
            self.head_training: list[bool] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.backbone_training.append(self.backbone.training)
            self.head_training.append(self.head.training)
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            self.losses.append(loss.item())
            return loss

        def _evaluate(self, batch: Any, stage: str) -> None:
            x, y = batch
            logits = self(x)
            self.log(f"{stage}_loss", F.cross_entropy(logits, y))
            self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean())

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self._evaluate(batch, "val")

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self._evaluate(batch, "test")

        def configure_optimizers(self) -> Any:
            trainable = [p for p in self.parameters() if p.requires_grad]
            return torch.optim.SGD(trainable, lr=self.lr, momentum=0.9)

    model = FineTuner()
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, default_root_dir=str(tmp), **COMMON)
    trainer.fit(model, DataLoader(train_set, batch_size=8, shuffle=True), DataLoader(val_set, batch_size=8))
    out: dict[str, Any] = {
        "losses": list(model.losses),
        "backbone_training": list(model.backbone_training),
        "head_training": list(model.head_training),
        "modes_after_fit": {name or "<root>": m.training for name, m in model.named_modules()},
        "weights": _weights(model),
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "metrics": {"fit": _floats(trainer.callback_metrics)},
    }
    out["test_results"] = _results(trainer.test(model, DataLoader(test_set, batch_size=8)))
    out["metrics"]["test"] = _floats(trainer.callback_metrics)
    out["modes_after_test"] = {name or "<root>": m.training for name, m in model.named_modules()}
    return out


# --------------------------------------------------------------------------------------------------
# 7. DQN: an IterableDataset over a replay buffer that the agent fills from training_step (Lightning's RL example)
# --------------------------------------------------------------------------------------------------
class _ChainEnv:
    """A 6-state chain: action 1 moves right (reward 1 at the end, then back to the start), action 0 moves left."""

    n_states = 6

    def __init__(self) -> None:
        self.state = 0

    def observe(self) -> torch.Tensor:
        return F.one_hot(torch.tensor(self.state), self.n_states).float()

    def step(self, action: int) -> tuple[torch.Tensor, float, bool]:
        self.state = max(0, self.state - 1) if action == 0 else self.state + 1
        done = self.state == self.n_states - 1
        if done:
            self.state = 0
        return self.observe(), float(done), done


def dqn_iterable_dataset(pl: Any, tmp: Path) -> dict[str, Any]:
    from torch.utils.data import IterableDataset

    _start(pl, 5)

    class ReplayBuffer:
        def __init__(self, capacity: int) -> None:
            self.items: list[tuple[torch.Tensor, int, float, bool, torch.Tensor]] = []
            self.capacity = capacity

        def append(self, item: tuple[torch.Tensor, int, float, bool, torch.Tensor]) -> None:
            self.items = (self.items + [item])[-self.capacity :]

        def sample(self, size: int) -> list[tuple[torch.Tensor, int, float, bool, torch.Tensor]]:
            picks = torch.randint(len(self.items), (size,)).tolist()  # the global RNG, seeded by seed_everything
            return [self.items[i] for i in picks]

    class RLDataset(IterableDataset):
        """Yields ``sample_size`` experiences from the buffer per epoch: the loader's length is unknown."""

        def __init__(self, buffer: ReplayBuffer, sample_size: int) -> None:
            self.buffer, self.sample_size = buffer, sample_size

        def __iter__(self) -> Any:
            yield from self.buffer.sample(self.sample_size)

    class DQN(pl.LightningModule):
        def __init__(self, lr: float = 1e-2, gamma: float = 0.9, sync_rate: int = 4, batch_size: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(_ChainEnv.n_states, 16), nn.ReLU(), nn.Linear(16, 2))
            self.target = nn.Sequential(nn.Linear(_ChainEnv.n_states, 16), nn.ReLU(), nn.Linear(16, 2))
            self.target.load_state_dict(self.net.state_dict())
            self.env, self.buffer = _ChainEnv(), ReplayBuffer(200)
            self.episode_reward, self.total_rewards = 0.0, []
            self.losses: list[float] = []
            for _ in range(32):  # warm start: random play fills the buffer
                self.play(epsilon=1.0)

        def play(self, epsilon: float) -> None:
            state = self.env.observe()
            if torch.rand(1).item() < epsilon:
                action = int(torch.randint(2, (1,)).item())
            else:
                with torch.no_grad():
                    action = int(self.net(state).argmax().item())
            next_state, reward, done = self.env.step(action)
            self.buffer.append((state, action, reward, done, next_state))
            self.episode_reward += reward
            if done:
                self.total_rewards.append(self.episode_reward)
                self.episode_reward = 0.0

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.play(epsilon=max(0.05, 1.0 - self.global_step / 20))
            states, actions, rewards, dones, next_states = batch
            q = self.net(states).gather(1, actions.long().unsqueeze(-1)).squeeze(-1)
            with torch.no_grad():
                next_q = self.target(next_states).max(1)[0]
                next_q[dones] = 0.0
            loss = F.mse_loss(q, rewards.float() + self.hparams.gamma * next_q)
            if self.global_step % self.hparams.sync_rate == 0:
                self.target.load_state_dict(self.net.state_dict())
            self.log("train_loss", loss)
            self.log("episodes", float(len(self.total_rewards)), prog_bar=True)
            self.losses.append(loss.item())
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(RLDataset(self.buffer, sample_size=40), batch_size=self.hparams.batch_size)

    model = DQN()
    logger = _sub(pl, "loggers").CSVLogger(save_dir=str(tmp), name="logs")
    trainer = pl.Trainer(max_epochs=4, logger=logger, log_every_n_steps=2, default_root_dir=str(tmp), **COMMON)
    trainer.fit(model)
    return {
        "losses": list(model.losses),
        "weights": _weights(model),
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "metrics": {"fit": _floats(trainer.callback_metrics)},
        "episodes": len(model.total_rewards),
        "num_training_batches": float(trainer.num_training_batches),
        "csv": _read_csv_logger(logger.log_dir),
    }


# --------------------------------------------------------------------------------------------------
# 8. Fine-tuning with BackboneFinetuning and a BaseFinetuning subclass (Lightning's transfer-learning example)
# --------------------------------------------------------------------------------------------------
def backbone_finetuning(pl: Any, tmp: Path) -> dict[str, Any]:
    _start(pl, 21)
    callbacks = _sub(pl, "callbacks")
    g = torch.Generator().manual_seed(8)
    x = torch.randn(96, 6, generator=g)
    y = (x[:, :3].sum(1) > 0).long()

    class TransferModel(pl.LightningModule):
        def __init__(self, lr: float = 5e-2) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.backbone = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 12))
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(12, 2))
            self.losses: list[float] = []
            self.lrs: list[list[float]] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x))

        def on_train_epoch_start(self) -> None:
            self.lrs.append([group["lr"] for group in self.optimizers().param_groups])

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_acc", (self(x).argmax(1) == y).float().mean())

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=self.hparams.lr)
            return [optimizer], [torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[3], gamma=0.5)]

    class HeadThenAll(callbacks.BaseFinetuning):
        """Lightning's example pattern: freeze the backbone but its BatchNorm, unfreeze at a milestone."""

        def __init__(self, milestone: int = 1) -> None:
            super().__init__()
            self.milestone = milestone

        def freeze_before_training(self, pl_module: Any) -> None:
            self.freeze(pl_module.backbone, train_bn=True)

        def finetune_function(self, pl_module: Any, epoch: int, optimizer: Any) -> None:
            if epoch == self.milestone:
                self.unfreeze_and_add_param_group(pl_module.backbone, optimizer=optimizer, train_bn=True)

    out: dict[str, Any] = {}
    backbone = callbacks.BackboneFinetuning(unfreeze_backbone_at_epoch=1, lambda_func=lambda epoch: 1.5)
    for name, callback in [("backbone", backbone), ("base", HeadThenAll())]:
        _start(pl, 21)
        model = TransferModel()
        trainer = pl.Trainer(max_epochs=5, callbacks=[callback], logger=False, enable_checkpointing=False,
                             default_root_dir=str(tmp), **COMMON)  # fmt: skip
        loader = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16, shuffle=True)
        trainer.fit(model, loader, DataLoader(TensorDataset(x[64:], y[64:]), batch_size=16))
        out[name] = {"lrs": model.lrs, "groups": len(trainer.optimizers[0].param_groups),
                     "frozen_after": sorted(n for n, p in model.named_parameters() if not p.requires_grad),
                     "bn_tracks": model.backbone[1].track_running_stats}  # fmt: skip
        out.setdefault("losses", []).extend(model.losses)
        out[f"weights_{name}"] = _weights(model)
        out[f"metrics_{name}"] = _floats(trainer.callback_metrics)
    out["weights"] = out.pop("weights_base")
    out["metrics"] = {"fit": out.pop("metrics_base")}
    out["global_step"], out["current_epoch"] = trainer.global_step, trainer.current_epoch
    return out


PROGRAMS = {
    "autoencoder": autoencoder,
    "image_classifier": image_classifier,
    "transformer_lm": transformer_lm,
    "lstm_early_stopping": lstm_early_stopping,
    "gan_manual_optimization": gan_manual_optimization,
    "frozen_backbone_finetune": frozen_backbone_finetune,
    "dqn_iterable_dataset": dqn_iterable_dataset,
    "backbone_finetuning": backbone_finetuning,
}

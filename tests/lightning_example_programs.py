"""Two more programs in the style of Lightning's examples, run by ``test_same_results`` like those in
``lightning_programs``: the LightningCLI-driven autoencoder (classes given to ``LightningCLI`` in a script's own
main, ``run=False``, a callback in ``trainer_defaults`` that draws images through ``trainer.logger.experiment``)
and the basic GAN (manual optimization, images logged with ``self.logger.experiment.add_image``).

Both use the default logger: TensorBoard's, when tensorboard is installed (the dev extra), in both frameworks;
the images are read back from the event files and compared pixel for pixel.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from lightning_programs import _floats, _results, _start, _weights
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split


def logged_images(log_dir: str) -> list[dict[str, Any]]:
    """Every image in the event files of ``log_dir``: tag, step, and the decoded pixels (uint8 tensor)."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = []
    for name in sorted(os.listdir(log_dir)):
        if not name.startswith("events.out.tfevents."):
            continue
        events = EventAccumulator(os.path.join(log_dir, name), size_guidance={"images": 0})
        events.Reload()
        for tag in events.Tags()["images"]:
            for image in events.Images(tag):
                pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
                found.append({"tag": tag, "step": image.step, "pixels": torch.from_numpy(pixels.copy())})
    return found


def _event_files(log_dir: str) -> int:
    return sum(name.startswith("events.out.tfevents.") for name in os.listdir(log_dir))


# --------------------------------------------------------------------------------------------------
# LightningCLI autoencoder: LightningCLI(Model, DataModule, run=False, trainer_defaults={"callbacks": ...})
# --------------------------------------------------------------------------------------------------
def _cli_classes(pl: Any) -> tuple[type, type]:
    """The example's classes, at module level (LightningCLI's config names them by import path)."""

    class ImageSampler(pl.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            x, _ = next(iter(trainer.datamodule.val_dataloader()))
            with torch.no_grad():
                pl_module.eval()
                images = pl_module(x[:4]).view(-1, 1, 4, 4)
                pl_module.train()
            grid = torchvision.utils.make_grid(images, nrow=2, normalize=True)
            trainer.logger.experiment.add_image("reconstructions", grid, global_step=trainer.global_step)

    class LitAutoEncoder(pl.LightningModule):
        def __init__(self, hidden_dim: int = 8, learning_rate: float = 1e-2) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.encoder = nn.Sequential(nn.Linear(16, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 3))
            self.decoder = nn.Sequential(nn.Linear(3, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 16))
            self.losses: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.encoder(x.view(x.size(0), -1)))

        def _loss(self, batch: Any) -> torch.Tensor:
            x, _ = batch
            return F.mse_loss(self(x), x.view(x.size(0), -1))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = self._loss(batch)
            self.log("train_loss", loss)
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", self._loss(batch), on_step=True)

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self.log("test_loss", self._loss(batch))

        def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
            return self(batch[0])

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)

    class MyDataModule(pl.LightningDataModule):
        def __init__(self, batch_size: int = 8) -> None:
            super().__init__()
            generator = torch.Generator().manual_seed(0)
            data = TensorDataset(torch.rand(80, 1, 4, 4, generator=generator), torch.zeros(80))
            self.train_set, self.val_set, self.test_set = random_split(data, [50, 15, 15], generator=generator)
            self.batch_size = batch_size

        def train_dataloader(self) -> DataLoader:
            return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(self.val_set, batch_size=self.batch_size)

        def test_dataloader(self) -> DataLoader:
            return DataLoader(self.test_set, batch_size=self.batch_size)

        def predict_dataloader(self) -> DataLoader:
            return DataLoader(self.test_set, batch_size=self.batch_size)

    module = sys.modules[__name__]
    suffix = pl.__name__
    for cls in (ImageSampler, LitAutoEncoder, MyDataModule):
        cls.__qualname__ = cls.__name__ = f"{cls.__name__}_{suffix}"
        setattr(module, cls.__name__, cls)
    module.IMAGE_SAMPLER[suffix] = ImageSampler
    return LitAutoEncoder, MyDataModule


IMAGE_SAMPLER: dict[str, type] = {}


def cli_autoencoder(pl: Any, tmp: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    model_class, data_class = _cli_classes(pl)
    LightningCLI = importlib.import_module(f"{pl.__name__}.cli").LightningCLI
    # the example's main(), with its command line given as `args`
    cli = LightningCLI(
        model_class,
        data_class,
        seed_everything_default=1234,
        run=False,
        trainer_defaults={"callbacks": IMAGE_SAMPLER[pl.__name__](), "max_epochs": 3},
        save_config_kwargs={"overwrite": True},
        args=["--model.hidden_dim", "12", "--data.batch_size", "10", f"--trainer.default_root_dir={tmp}",
              "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=2",
              "--trainer.enable_model_summary=false"],
    )  # fmt: skip
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    out: dict[str, Any] = {
        "losses": list(cli.model.losses),
        "weights": _weights(cli.model),
        "global_step": cli.trainer.global_step,
        "current_epoch": cli.trainer.current_epoch,
        "metrics": {"fit": _floats(cli.trainer.callback_metrics)},
        "best_checkpoint": os.path.basename(cli.trainer.checkpoint_callback.best_model_path),
    }
    out["test_results"] = _results(cli.trainer.test(ckpt_path="best", datamodule=cli.datamodule, verbose=False))
    out["predictions"] = torch.cat(cli.trainer.predict(ckpt_path="best", datamodule=cli.datamodule))
    log_dir = cli.trainer.log_dir
    out["images"] = logged_images(log_dir)
    out["event_files"] = _event_files(log_dir)
    out["config_saved"] = os.path.isfile(os.path.join(log_dir, "config.yaml"))
    return out


# --------------------------------------------------------------------------------------------------
# basic GAN: manual optimization, sample images logged through self.logger.experiment each epoch
# --------------------------------------------------------------------------------------------------
def gan_logs_images(pl: Any, tmp: Path) -> dict[str, Any]:
    _start(pl, 3)
    g = torch.Generator().manual_seed(5)
    real = (torch.rand(48, 1, 4, 4, generator=g) > 0.5).float() * 2 - 1

    class GAN(pl.LightningModule):
        def __init__(self, latent_dim: int = 6, lr: float = 2e-3) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.automatic_optimization = False
            self.generator = nn.Sequential(nn.Linear(latent_dim, 32), nn.LeakyReLU(0.2), nn.Linear(32, 16), nn.Tanh())
            self.discriminator = nn.Sequential(nn.Linear(16, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
            self.validation_z = torch.randn(4, latent_dim)
            self.losses: list[dict[str, float]] = []

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.generator(z).view(-1, 1, 4, 4)

        def training_step(self, batch: Any, batch_idx: int) -> None:
            (imgs,) = batch
            opt_g, opt_d = self.optimizers()
            z = torch.randn(imgs.shape[0], self.hparams.latent_dim).type_as(imgs)
            flat = imgs.view(imgs.size(0), -1)

            self.toggle_optimizer(opt_g)
            generated = self(z)
            if batch_idx == 0:  # as the example: a grid of this batch's first images
                grid = torchvision.utils.make_grid(generated[:4], nrow=2, normalize=True)
                self.logger.experiment.add_image("train/generated_images", grid, self.current_epoch)
            valid = torch.ones(imgs.size(0), 1).type_as(imgs)
            g_loss = F.binary_cross_entropy_with_logits(self.discriminator(generated.view(imgs.size(0), -1)), valid)
            self.log("g_loss", g_loss, prog_bar=True)
            self.manual_backward(g_loss)
            opt_g.step()
            opt_g.zero_grad()
            self.untoggle_optimizer(opt_g)

            self.toggle_optimizer(opt_d)
            real_loss = F.binary_cross_entropy_with_logits(self.discriminator(flat), valid)
            fake = torch.zeros(imgs.size(0), 1).type_as(imgs)
            fake_loss = F.binary_cross_entropy_with_logits(
                self.discriminator(self(z).detach().view(imgs.size(0), -1)), fake
            )
            d_loss = (real_loss + fake_loss) / 2
            self.log("d_loss", d_loss, prog_bar=True)
            self.manual_backward(d_loss)
            opt_d.step()
            opt_d.zero_grad()
            self.untoggle_optimizer(opt_d)
            self.losses.append({"g_loss": g_loss.item(), "d_loss": d_loss.item()})

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            pass

        def on_validation_epoch_end(self) -> None:
            z = self.validation_z.type_as(self.generator[0].weight)
            grid = torchvision.utils.make_grid(self(z), nrow=2, normalize=True)
            self.logger.experiment.add_image("validation/generated_images", grid, self.current_epoch)

        def configure_optimizers(self) -> Any:
            opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=(0.5, 0.999))
            opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=(0.5, 0.999))
            return [opt_g, opt_d], []

    model = GAN()
    trainer = pl.Trainer(max_epochs=3, default_root_dir=str(tmp), log_every_n_steps=2, accelerator="cpu",
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    loader = DataLoader(TensorDataset(real), batch_size=12, shuffle=True)
    trainer.fit(model, loader, DataLoader(TensorDataset(real[:8]), batch_size=8))
    return {
        "losses": list(model.losses),
        "weights": _weights(model),
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "metrics": {"fit": _floats(trainer.callback_metrics)},
        "logger": type(trainer.logger).__name__,
        "images": logged_images(trainer.log_dir),
        "event_files": _event_files(trainer.log_dir),
        "hparams_yaml": os.path.isfile(os.path.join(trainer.log_dir, "hparams.yaml")),
    }


EXAMPLE_PROGRAMS = {"cli_autoencoder": cli_autoencoder, "gan_logs_images": gan_logs_images}

"""Modules and callbacks that record every hook call, built the same way on lightray and on Lightning.

``make_recorder(pl)`` takes a package exposing ``LightningModule`` and ``Callback`` (``lightray`` or
``pytorch_lightning``) and returns classes whose hooks append their names, with how many positional
arguments and which keywords they got, to a shared list, so the two frameworks can be run on the same
program and their call sequences compared.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

MODULE_HOOKS = [
    "prepare_data", "setup", "configure_model", "configure_optimizers", "on_fit_start", "on_fit_end",
    "on_train_start", "on_train_end", "on_train_epoch_start", "on_train_epoch_end",
    "on_train_batch_start", "on_train_batch_end", "training_step",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_validation_batch_start", "on_validation_batch_end", "validation_step",
    "on_validation_model_eval", "on_validation_model_train",
    "on_test_start", "on_test_end", "on_test_epoch_start", "on_test_epoch_end",
    "on_test_batch_start", "on_test_batch_end", "test_step", "on_test_model_eval", "on_test_model_train",
    "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_predict_batch_start", "on_predict_batch_end", "predict_step", "on_predict_model_eval",
    "on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer",
    "on_before_zero_grad", "optimizer_zero_grad", "on_before_backward", "backward", "on_after_backward",
    "on_before_optimizer_step", "configure_gradient_clipping", "optimizer_step", "lr_scheduler_step",
    "teardown", "on_save_checkpoint", "on_load_checkpoint",
    "train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader",
]  # fmt: skip

CALLBACK_HOOKS = [
    "setup", "teardown", "on_fit_start", "on_fit_end", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_start", "on_train_end", "on_train_epoch_start", "on_train_epoch_end",
    "on_train_batch_start", "on_train_batch_end",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_validation_batch_start", "on_validation_batch_end",
    "on_test_start", "on_test_end", "on_test_epoch_start", "on_test_epoch_end",
    "on_test_batch_start", "on_test_batch_end",
    "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_predict_batch_start", "on_predict_batch_end",
    "on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_save_checkpoint", "on_load_checkpoint", "on_exception",
]  # fmt: skip


def _recording(name: str, prefix: str, base: type) -> Any:
    def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        # how the hook was called matters too: overrides with other parameter names break on keywords
        keywords = "".join(f", {k}=" for k in sorted(kwargs))
        self.calls.append(f"{prefix}{name}({len(args)} args{keywords})")
        return getattr(base, name)(self, *args, **kwargs)

    hook.__name__ = name
    return hook


def make_recorder(pl: Any, base_module: type | None = None) -> tuple[type, type]:
    """Return (RecordingModule base, RecordingCallback) classes built on framework ``pl``."""
    module_base = base_module or pl.LightningModule

    module_attrs = {h: _recording(h, "", module_base) for h in MODULE_HOOKS if hasattr(module_base, h)}
    # Hooks the module must define itself are recorded by the concrete class (see TinyModel).
    for name in (
        "training_step",
        "validation_step",
        "test_step",
        "predict_step",
        "configure_optimizers",
        "train_dataloader",
        "val_dataloader",
        "test_dataloader",
        "predict_dataloader",
    ):
        module_attrs.pop(name, None)
    RecordingModule = type("RecordingModule", (module_base,), module_attrs)

    cb_attrs = {h: _recording(h, "Callback.", pl.Callback) for h in CALLBACK_HOOKS}
    RecordingCallback = type("RecordingCallback", (pl.Callback,), cb_attrs)
    return RecordingModule, RecordingCallback


def make_tiny_model(pl: Any) -> type:
    """A two-layer regression model on fixed random data that records all hooks."""
    RecordingModule, _ = make_recorder(pl)

    class TinyModel(RecordingModule):  # type: ignore[misc, valid-type]
        def __init__(self, calls: list[str], n: int = 64, batch_size: int = 8) -> None:
            super().__init__()
            self.calls = calls
            self.layer = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(n, 8, generator=g)
            self.y = torch.randn(n, 1, generator=g)
            self.batch_size = batch_size
            self.losses: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

        def _loss(self, batch: Any) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self(x), y)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.calls.append("training_step")
            loss = self._loss(batch)
            self.losses.append(loss.item())
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.calls.append("validation_step")
            self.log("val_loss", self._loss(batch))

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self.calls.append("test_step")
            self.log("test_loss", self._loss(batch))

        def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.calls.append("predict_step")
            return self(batch[0])

        def configure_optimizers(self) -> Any:
            self.calls.append("configure_optimizers")
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def _loader(self) -> DataLoader:
            return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)

        def train_dataloader(self) -> DataLoader:
            self.calls.append("train_dataloader")
            return self._loader()

        def val_dataloader(self) -> DataLoader:
            self.calls.append("val_dataloader")
            return self._loader()

        def test_dataloader(self) -> DataLoader:
            self.calls.append("test_dataloader")
            return self._loader()

        def predict_dataloader(self) -> DataLoader:
            self.calls.append("predict_dataloader")
            return self._loader()

    return TinyModel


def make_compare_model(pl: Any) -> type:
    """A configurable model for comparing lightray with Lightning: optimizer, scheduler, manual mode."""
    RecordingModule, _ = make_recorder(pl)

    class CompareModel(RecordingModule):  # type: ignore[misc, valid-type]
        def __init__(
            self,
            calls: list[str],
            optim: str = "sgd",
            sched: str | None = None,
            manual: bool = False,
            n: int = 96,
            batch_size: int = 8,
            shuffle: bool = False,
        ) -> None:
            super().__init__()
            self.calls, self.optim, self.sched = calls, optim, sched
            self.automatic_optimization = not manual
            self.body = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
            self.critic = nn.Linear(1, 1)
            g = torch.Generator().manual_seed(1)
            self.x = torch.randn(n, 8, generator=g)
            self.y = torch.randn(n, 1, generator=g)
            self.batch_size, self.shuffle = batch_size, shuffle
            self.losses: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.calls.append("training_step")
            x, y = batch
            if self.automatic_optimization:
                loss = nn.functional.mse_loss(self(x), y)
                self.losses.append(loss.item())
                self.log("train_loss", loss, prog_bar=True)
                return {"loss": loss, "extra": loss.detach() * 2}
            opt_a, opt_b = self.optimizers()
            self.toggle_optimizer(opt_a)
            loss_a = nn.functional.mse_loss(self(x), y)
            self.manual_backward(loss_a)
            self.clip_gradients(opt_a, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
            opt_a.step()
            opt_a.zero_grad()
            self.untoggle_optimizer(opt_a)
            self.toggle_optimizer(opt_b)
            loss_b = nn.functional.mse_loss(self.critic(self(x).detach()), y)
            self.manual_backward(loss_b)
            opt_b.step()
            opt_b.zero_grad()
            self.untoggle_optimizer(opt_b)
            self.losses += [loss_a.item(), loss_b.item()]
            self.log_dict({"loss_a": loss_a, "loss_b": loss_b})
            return None

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.calls.append("validation_step")
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self(x), y))

        def configure_optimizers(self) -> Any:
            self.calls.append("configure_optimizers")
            if not self.automatic_optimization:
                return [
                    torch.optim.SGD(self.body.parameters(), lr=0.05),
                    torch.optim.Adam(self.critic.parameters(), lr=0.01),
                ]
            if self.optim == "adam":
                opt = torch.optim.Adam(self.parameters(), lr=0.01)
            else:
                opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            if self.sched == "steplr":
                return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]
            if self.sched == "steplr_step":
                sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.7)
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 2}}
            if self.sched == "plateau":
                sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}
            return opt

        def train_dataloader(self) -> DataLoader:
            self.calls.append("train_dataloader")
            g = torch.Generator().manual_seed(2)
            return DataLoader(
                TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=self.shuffle, generator=g
            )

        def val_dataloader(self) -> DataLoader:
            self.calls.append("val_dataloader")
            return DataLoader(TensorDataset(self.x[:32], self.y[:32]), batch_size=self.batch_size)

    return CompareModel

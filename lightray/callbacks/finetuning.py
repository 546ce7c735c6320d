"""Fine-tuning callbacks: freeze modules before training and unfreeze them into new optimizer param groups later.

``BaseFinetuning`` is Lightning's base (override ``freeze_before_training`` and ``finetune_function``);
``BackboneFinetuning`` unfreezes ``pl_module.backbone`` at an epoch and then raises its learning rate each epoch.
The param groups they add are saved in checkpoints (by parameter name) and put back when a run resumes. Runs in
the training process.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim import Optimizer

from lightray.callbacks.callback import Callback
from lightray.errors import MisconfigurationError
from lightray.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer

Modules = nn.Module | Iterable[Any]
# torch's batch norms by their public names (lazy ones become one of these once they know their size)
_BatchNorm = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class BaseFinetuning(Callback):
    """Freeze in ``freeze_before_training(pl_module)`` (called at ``setup``, before ``configure_optimizers``), and
    unfreeze in ``finetune_function(pl_module, epoch, optimizer)`` (each training epoch's start, per optimizer)
    with ``unfreeze_and_add_param_group``. Build the optimizer from trainable parameters only:
    ``Adam(filter(lambda p: p.requires_grad, self.parameters()))``."""

    def __init__(self) -> None:
        self._internal_optimizer_metadata: dict[int, list[dict[str, Any]]] = {}  # param groups by parameter name
        self._restarting = False

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        raise NotImplementedError

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ module helpers (Lightning's static API)
    @staticmethod
    def flatten_modules(modules: Modules) -> list[nn.Module]:
        """The leaf modules, and the parents that hold parameters of their own."""
        if isinstance(modules, nn.ModuleDict):
            modules = modules.values()
        if isinstance(modules, Iterable):
            found: list[nn.Module] = []
            for module in modules:
                found.extend(BaseFinetuning.flatten_modules(module))
            candidates: Iterable[nn.Module] = found
        else:
            candidates = modules.modules()
        return [m for m in candidates if not list(m.children()) or next(m.parameters(recurse=False), None) is not None]

    @staticmethod
    def filter_params(modules: Modules, train_bn: bool = True, requires_grad: bool = True) -> Generator:
        """The parameters whose ``requires_grad`` is ``requires_grad`` (BatchNorm's only when ``train_bn``)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for param in module.parameters(recurse=False):
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: Modules) -> None:
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: nn.Module) -> None:
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: Modules, train_bn: bool = True) -> None:
        """Stop training ``modules`` (their BatchNorm layers keep training when ``train_bn``)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: Optimizer, params: Iterable) -> list:
        """``params`` that no param group of ``optimizer`` holds yet (compared by value, as Lightning does)."""
        new: list[nn.Parameter] = []
        present: list[nn.Parameter] = []
        for param in params:
            held = any(torch.equal(p, param) for group in optimizer.param_groups for p in group["params"])
            (present if held else new).append(param)
        if present:
            rank_zero_warn(
                "The provided params to be frozen already exist within another group of this optimizer. Those "
                "parameters will be skipped.\nHINT: Did you init your optimizer in `configure_optimizer` as such:\n "
                f"{type(optimizer)}(filter(lambda p: p.requires_grad, self.parameters()), ...) "
            )
        return new

    @staticmethod
    def unfreeze_and_add_param_group(
        modules: Modules,
        optimizer: Optimizer,
        lr: float | None = None,
        initial_denom_lr: float = 10.0,
        train_bn: bool = True,
    ) -> None:
        """Make ``modules`` trainable and give their parameters a new param group of ``optimizer``, at ``lr`` (or
        the first group's lr / ``initial_denom_lr``)."""
        BaseFinetuning.make_trainable(modules)
        group_lr = optimizer.param_groups[0]["lr"] / initial_denom_lr if lr is None else float(lr)
        params = BaseFinetuning.filter_on_optimizer(
            optimizer, BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True)
        )
        if params:
            optimizer.add_param_group({"params": params, "lr": group_lr})

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.freeze_before_training(pl_module)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """On resume: give the optimizers the param groups this callback had added (their states load after)."""
        if not self._restarting:
            return
        self._restarting = False
        by_name = dict(pl_module.named_parameters())
        for index, optimizer in enumerate(trainer.optimizers):
            groups = self._internal_optimizer_metadata.get(index)
            if groups:
                optimizer.param_groups = _map_params(groups, by_name)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        names = {p: n for n, p in pl_module.named_parameters()}
        for index, optimizer in enumerate(trainer.optimizers):
            before = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            groups = optimizer.param_groups
            if index not in self._internal_optimizer_metadata:
                self._internal_optimizer_metadata[index] = _map_params(groups, names)
            elif before != len(groups):
                self._internal_optimizer_metadata[index].extend(_map_params(groups[before:], names))

    def state_dict(self) -> dict[str, Any]:
        return {"internal_optimizer_metadata": self._internal_optimizer_metadata}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restarting = True
        self._internal_optimizer_metadata = state_dict.get("internal_optimizer_metadata", state_dict)


def _map_params(groups: list[dict[str, Any]], mapping: dict[Any, Any]) -> list[dict[str, Any]]:
    """Param groups with each parameter replaced through ``mapping`` (to names for saving, back for loading)."""
    return [{**{k: v for k, v in g.items() if k != "params"}, "params": [mapping[p] for p in g["params"]]}
            for g in groups]  # fmt: skip


def multiplicative(epoch: int) -> float:
    """``BackboneFinetuning``'s default schedule: the backbone's lr doubles each epoch."""
    return 2.0


class BackboneFinetuning(BaseFinetuning):
    """Train ``pl_module.backbone`` from ``unfreeze_backbone_at_epoch`` on, at a lr that starts low and grows.

    At that epoch the backbone joins the optimizer at ``backbone_initial_lr`` (default: the model's lr x
    ``backbone_initial_ratio_lr``); each later epoch its lr is multiplied by ``lambda_func(epoch + 1)``, and with
    ``should_align`` it stops at the model's lr.
    """

    def __init__(
        self,
        unfreeze_backbone_at_epoch: int = 10,
        lambda_func: Callable[[int], float] = multiplicative,
        backbone_initial_ratio_lr: float = 10e-2,
        backbone_initial_lr: float | None = None,
        should_align: bool = True,
        initial_denom_lr: float = 10.0,
        train_bn: bool = True,
        verbose: bool = False,
        rounding: int = 12,
    ) -> None:
        super().__init__()
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous_backbone_lr": self.previous_backbone_lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_backbone_lr = state_dict["previous_backbone_lr"]
        super().load_state_dict(state_dict)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not isinstance(getattr(pl_module, "backbone", None), nn.Module):
            raise MisconfigurationError(
                "The LightningModule should have a nn.Module `backbone` attribute: BackboneFinetuning freezes and "
                "later unfreezes it. Name the pretrained part `self.backbone`, or subclass BaseFinetuning."
            )
        super().on_fit_start(trainer, pl_module)

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        current_lr = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = (
                self.backbone_initial_lr
                if self.backbone_initial_lr is not None
                else current_lr * self.backbone_initial_ratio_lr
            )
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer, backbone_lr, train_bn=self.train_bn,
                                              initial_denom_lr=self.initial_denom_lr)  # fmt: skip
        elif epoch > self.unfreeze_backbone_at_epoch and self.previous_backbone_lr is not None:
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > current_lr:
                backbone_lr = current_lr
            optimizer.param_groups[-1]["lr"] = backbone_lr
        else:
            return
        self.previous_backbone_lr = backbone_lr
        if self.verbose:
            rank_zero_info(
                f"Current lr: {round(current_lr, self.rounding)}, Backbone lr: {round(backbone_lr, self.rounding)}"
            )

"""LightningModule: an ``nn.Module`` that also says how to train, evaluate and optimize itself."""

from __future__ import annotations

import contextlib
import inspect
import os
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim import Optimizer

from lightray.core import export
from lightray.errors import MisconfigurationError
from lightray.hooks import CheckpointHooks, DataHooks, ModelHooks
from lightray.utilities.apply_func import apply_to_tensors
from lightray.utilities.parsing import AttributeDict, collect_init_args
from lightray.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from lightray.optimization import LightningOptimizer
    from lightray.trainer import Trainer


class LightningModule(ModelHooks, DataHooks, CheckpointHooks, nn.Module):
    """Lightning 2.x's LightningModule: define ``training_step`` and ``configure_optimizers`` at least.

    The module is built on the driver; its hooks and steps run in the training process (in-process
    for local runs, on every Ray Train worker when the Trainer has ``num_workers >= 1``).
    """

    # properties TorchScript must not compile (they reach the Trainer); Lightning's list
    __jit_unused_properties__: list[str] = [
        "trainer", "automatic_optimization", "device", "dtype", "on_gpu", "current_epoch", "global_step",
        "global_rank", "local_rank", "logger", "loggers", "hparams", "hparams_initial", "logs_hyperparameters",
        "example_input_array", "strict_loading",
    ]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._example_input_array: Any = None
        self._strict_loading: bool | None = None
        self._trainer: Trainer | None = None
        self._jit_is_scripting = False
        self._hparams: AttributeDict = AttributeDict()
        self._hparams_initial: AttributeDict = AttributeDict()
        self._log_hyperparams = True
        self._automatic_optimization = True
        self._param_requires_grad_state: dict[nn.Parameter, bool] = {}
        self._cpu_device = torch.device("cpu")

    # ------------------------------------------------------------------ state the trainer provides
    @property
    def trainer(self) -> Trainer:
        if self._trainer is None and not self._jit_is_scripting:  # TorchScript probes every attribute
            raise RuntimeError(f"{type(self).__name__} is not attached to a `Trainer`; call `trainer.fit(model)`.")
        return self._trainer  # type: ignore[return-value]

    @trainer.setter
    def trainer(self, trainer: Trainer | None) -> None:
        self._trainer = trainer

    @property
    def automatic_optimization(self) -> bool:
        """False switches to manual optimization: step the optimizers yourself in ``training_step``."""
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    @property
    def device(self) -> torch.device:
        param = next(self.parameters(), None)
        return param.device if param is not None else self._cpu_device

    @property
    def example_input_array(self) -> Any:
        """A batch for ``to_torchscript(method="trace")`` and ``to_onnx`` (set it in ``__init__``)."""
        return self._example_input_array

    @example_input_array.setter
    def example_input_array(self, example: Any) -> None:
        self._example_input_array = example

    @property
    def strict_loading(self) -> bool:
        """Whether a checkpoint's ``state_dict`` must match this module's exactly when a fit resumes (default True;
        set False to resume a module whose frozen, unsaved parts are left out)."""
        return True if self._strict_loading is None else self._strict_loading

    @strict_loading.setter
    def strict_loading(self, strict: bool) -> None:
        self._strict_loading = strict

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the module's floating-point parameters (the default dtype when it has none)."""
        param = next((p for p in self.parameters() if p.is_floating_point()), None)
        return param.dtype if param is not None else torch.get_default_dtype()

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def current_epoch(self) -> int:
        return self._trainer.current_epoch if self._trainer is not None else 0

    @property
    def global_step(self) -> int:
        return self._trainer.global_step if self._trainer is not None else 0

    @property
    def global_rank(self) -> int:
        return self._trainer.global_rank if self._trainer is not None else 0

    @property
    def local_rank(self) -> int:
        return self._trainer.local_rank if self._trainer is not None else 0

    @property
    def logger(self) -> Any:
        return self._trainer.logger if self._trainer is not None else None

    @property
    def loggers(self) -> list[Any]:
        return self._trainer.loggers if self._trainer is not None else []

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on global rank 0 only."""
        if self.global_rank == 0:
            print(*args, **kwargs)

    # ------------------------------------------------------------------ steps the user defines
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return super().forward(*args, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """Compute and return the training loss (a tensor, a dict with ``"loss"``, or None to skip)."""
        raise MisconfigurationError(
            f"`{type(self).__name__}` must define `training_step(self, batch, batch_idx)` to be trained."
        )

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluate one validation batch; log metrics with ``self.log``."""

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluate one test batch; log metrics with ``self.log``."""

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Return predictions for one batch; the default calls ``self(batch)``."""
        return self(batch)

    def configure_optimizers(self) -> Any:
        """Return an optimizer, a list of them, a dict with ``optimizer`` and ``lr_scheduler``, or lists."""
        raise MisconfigurationError(
            f"`{type(self).__name__}` has no `configure_optimizers`. Define it and return an optimizer, "
            "e.g. `return torch.optim.Adam(self.parameters(), lr=1e-3)`."
        )

    def configure_callbacks(self) -> Sequence[Any] | Any:
        """Return callbacks to add to the Trainer's (those of the same type replace the Trainer's)."""
        return []

    # ------------------------------------------------------------------ logging
    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        reduce_fx: str | Any = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Any | None = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        metric_attribute: str | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Record a scalar metric for the progress bar, the loggers and callbacks (``trainer.callback_metrics``).

        Defaults follow Lightning: per step in training hooks, per epoch (mean weighted by batch size)
        in validation and test. ``sync_dist=True`` reduces over all ranks under Ray.
        """
        if self._trainer is None:
            return  # as in Lightning: logging outside a Trainer is ignored
        if self._trainer.barebones:
            rank_zero_warn(
                "You are trying to `self.log()` but `Trainer(barebones=True)` is configured. Logging can impact raw "
                "speed so it is disabled under this setting."
            )
            return
        self._trainer.results.log(
            name,
            value,
            prog_bar=prog_bar,
            logger=True if logger is None else logger,
            on_step=on_step,
            on_epoch=on_epoch,
            reduce_fx=reduce_fx,
            enable_graph=enable_graph,
            sync_dist=sync_dist,
            add_dataloader_idx=add_dataloader_idx,
            batch_size=batch_size,
            rank_zero_only=rank_zero_only,
        )

    def all_gather(self, data: Any, sync_grads: bool = False) -> Any:
        """Gather tensors (or nests of them) from every process: each gains a leading world-size dimension.

        Runs where the step runs; collective on Ray Train workers, so every rank must call it.
        """
        if sync_grads:
            raise MisconfigurationError("all_gather(sync_grads=True) is not supported; gather detached tensors.")
        return apply_to_tensors(data, self.trainer.strategy.all_gather)

    def log_dict(self, dictionary: Mapping[str, Any], **kwargs: Any) -> None:
        """``self.log`` for each item of ``dictionary`` with the same options."""
        for name, value in dictionary.items():
            self.log(name, value, **kwargs)

    # ------------------------------------------------------------------ optimization
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer(s) from ``configure_optimizers``: one object if there is one, else a list."""
        opts: list[Any] = list(self.trainer.lightning_optimizers if use_pl_optimizer else self.trainer.optimizers)
        return opts[0] if len(opts) == 1 else opts

    def lr_schedulers(self) -> Any:
        """The scheduler(s) from ``configure_optimizers``: None, one object, or a list."""
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        if not schedulers:
            return None
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Use instead of ``loss.backward()`` in manual optimization (handles precision and DDP)."""
        if self.automatic_optimization:
            raise MisconfigurationError(
                "`manual_backward` is for manual optimization; set `self.automatic_optimization = False`."
            )
        self.trainer.fit_loop.optimization.backward(loss, None, *args, **kwargs)

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Run the backward pass; override to customise it."""
        loss.backward(*args, **kwargs)

    def toggle_optimizer(self, optimizer: Optimizer | LightningOptimizer) -> None:
        """Make only ``optimizer``'s parameters require grad (for several optimizers); undo with untoggle."""
        state: dict[nn.Parameter, bool] = {}
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                for param in group["params"]:
                    if param not in state:
                        state[param] = param.requires_grad
                        param.requires_grad = False
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.requires_grad = state[param]
        self._param_requires_grad_state = state

    def untoggle_optimizer(self, optimizer: Optimizer | LightningOptimizer) -> None:
        """Restore ``requires_grad`` as it was before :meth:`toggle_optimizer`."""
        for opt in self.trainer.optimizers:
            if opt is optimizer or opt is getattr(optimizer, "optimizer", None):
                continue
            for group in opt.param_groups:
                for param in group["params"]:
                    if param in self._param_requires_grad_state:
                        param.requires_grad = self._param_requires_grad_state[param]
        self._param_requires_grad_state = {}

    @contextlib.contextmanager
    def toggled_optimizer(self, optimizer: Optimizer | LightningOptimizer) -> Iterator[None]:
        """``toggle_optimizer`` for the block, ``untoggle_optimizer`` after it (manual optimization, GANs)."""
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def to_torchscript(
        self, file_path: str | os.PathLike | None = None, method: str = "script", example_inputs: Any = None
    ) -> Any:
        """The module compiled by TorchScript (``method="script"``) or traced (``"trace"``, on ``example_inputs`` or
        ``example_input_array``), in eval mode; saved to ``file_path`` when given. Runs anywhere."""
        with self._exporting():
            return export.to_torchscript(self, file_path, method, example_inputs)

    def to_onnx(self, file_path: str | os.PathLike, input_sample: Any = None, **kwargs: Any) -> None:
        """Export to ONNX with ``torch.onnx.export`` (needs the ``onnx`` package), on ``input_sample`` or
        ``example_input_array``. Runs anywhere."""
        with self._exporting():
            export.to_onnx(self, file_path, input_sample, **kwargs)

    @contextlib.contextmanager
    def _exporting(self) -> Iterator[None]:
        """Eval mode and no grad for an export, this module's own mode after; TorchScript probes every attribute,
        ``trainer`` included, meanwhile."""
        training, self._jit_is_scripting = self.training, True
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self._jit_is_scripting = False
            self.train(training)

    def clip_gradients(
        self,
        optimizer: Optimizer | LightningOptimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the gradients of ``optimizer``'s parameters by norm (default) or by value."""
        if self.automatic_optimization and (gradient_clip_val is not None or gradient_clip_algorithm is not None):
            trainer_val = self.trainer.gradient_clip_val
            if trainer_val is not None and gradient_clip_val not in (None, trainer_val):
                raise MisconfigurationError(
                    f"`gradient_clip_val={gradient_clip_val}` differs from the Trainer's "
                    f"`gradient_clip_val={trainer_val}`; set it in one place only."
                )
        if gradient_clip_val is None or gradient_clip_val == 0:
            return
        algorithm = gradient_clip_algorithm or "norm"
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if algorithm == "norm":
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        elif algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            raise MisconfigurationError(f"gradient_clip_algorithm={algorithm!r} is unknown; use 'norm' or 'value'.")

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Called before each optimizer step with the Trainer's clipping settings; override to customise."""
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def lr_scheduler_step(self, scheduler: Any, metric: Any | None) -> None:
        """Step one scheduler; override for schedulers with another ``step`` signature."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any | None = None) -> None:
        """Step ``optimizer``; the closure runs training_step, zero_grad and backward. Override for warm-up."""
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Optimizer) -> None:
        """Zero the gradients at the start of an accumulation window."""
        optimizer.zero_grad()

    # ------------------------------------------------------------------ hyperparameters
    @property
    def hparams(self) -> AttributeDict:
        """The hyperparameters saved with :meth:`save_hyperparameters`."""
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        return AttributeDict(self._hparams_initial)

    @property
    def logs_hyperparameters(self) -> bool:
        """Whether loggers receive the hyperparameters (``save_hyperparameters(logger=False)`` turns it off)."""
        return self._log_hyperparams

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: Sequence[str] | str | None = None,
        frame: types.FrameType | None = None,
        logger: bool = True,
    ) -> None:
        """Save ``__init__`` arguments (all, or those named in ``args``, or one dict) to ``self.hparams``.

        They are written to checkpoints and restored by ``load_from_checkpoint``.
        """
        self._log_hyperparams = logger
        ignored = {ignore} if isinstance(ignore, str) else set(ignore or ())
        if len(args) == 1 and not isinstance(args[0], str):
            given = args[0]
            values = dict(vars(given)) if isinstance(given, types.SimpleNamespace) else dict(given)
        else:
            caller = frame or inspect.currentframe().f_back  # type: ignore[union-attr]
            init_args = collect_init_args(caller, self)
            if args:
                missing = [a for a in args if a not in init_args]
                if missing:
                    raise MisconfigurationError(
                        f"save_hyperparameters: {missing} are not arguments of `__init__`; "
                        f"the arguments are {sorted(init_args)}."
                    )
                values = {a: init_args[a] for a in args}
            else:
                values = init_args
        values = {k: v for k, v in values.items() if k not in ignored}
        self._hparams.update(values)
        self._hparams_initial = AttributeDict(dict(self._hparams))

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        strict: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Build the module from a checkpoint's hyperparameters (``kwargs`` override them) and load its weights.

        Runs where it is called; reads local paths and URIs (``file://``, ``s3://``, ...).
        """
        from lightray.checkpoint import load_module_from_checkpoint

        return load_module_from_checkpoint(cls, checkpoint_path, map_location, strict, **kwargs)

    def freeze(self) -> None:
        """Turn off gradients for all parameters and switch to eval mode."""
        for param in self.parameters():
            param.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        """Turn gradients back on and switch to train mode."""
        for param in self.parameters():
            param.requires_grad = True
        self.train()

    def __getstate__(self) -> dict[str, Any]:
        # The trainer does not travel with the module (to Ray workers or into pickles).
        state = self.__dict__.copy()
        state["_trainer"] = None
        return state

"""The checkpoint format: Lightning's keys plus what exact resume needs; atomic save, safe load.

A checkpoint is a dict of plain data and tensors only, so it loads with
``torch.load(weights_only=True)`` (no code runs on load) and a Lightning user can open it.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from lightray import storage
from lightray.errors import MisconfigurationError
from lightray.seed import collect_rng_states

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.loops.fit_loop import FitLoop
    from lightray.trainer import Trainer

CHECKPOINT_FILE = "checkpoint.ckpt"  # the file inside a checkpoint folder that Ray Train persisted
SHARDED = "lightray_sharded"  # marks that file as the rest of a sharded (FSDP) checkpoint, whose tensors are shards

# The Lightning checkpoint layout we follow; Lightning reads this key to decide on format migrations.
LIGHTNING_FORMAT_VERSION = "2.5.0"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, foreign, or does not fit the model."""


# ====================================================================== writing
def dump_checkpoint(trainer: Trainer, weights_only: bool = False) -> dict[str, Any]:
    """The checkpoint dict of the trainer's current state (called on each rank; rank 0 writes it)."""
    from lightray import __version__

    module, loop = trainer.lightning_module, trainer.fit_loop
    checkpoint: dict[str, Any] = {
        "epoch": loop.state.epoch,
        "global_step": loop.state.global_step,
        "pytorch-lightning_version": LIGHTNING_FORMAT_VERSION,
        "lightray_version": __version__,
        "state_dict": trainer.strategy.checkpoint_module_state(module),
        "loops": {"fit_loop": loop.state_dict()},
    }
    if not weights_only:
        checkpoint["callbacks"] = {cb.state_key: cb.state_dict() for cb in trainer.callbacks}
        checkpoint["optimizer_states"] = [
            trainer.strategy.checkpoint_optimizer_state(module, opt) for opt in trainer.optimizers
        ]
        checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
        checkpoint["rng_states"] = collect_rng_states()
        checkpoint["callback_metrics"] = {
            k: v.detach().cpu() for k, v in trainer.callback_metrics.items() if isinstance(v, torch.Tensor)
        }
        precision_state = trainer.precision_plugin.state_dict()
        if precision_state:
            checkpoint["MixedPrecision"] = precision_state
    if module.hparams:
        checkpoint["hparams_name"] = "kwargs"  # saved as keyword arguments of __init__
        checkpoint["hyper_parameters"] = safe_hparams(module.hparams, type(module).__name__)
    datamodule = trainer.datamodule
    if datamodule is not None:
        if datamodule.hparams:
            checkpoint["datamodule_hparams_name"] = "kwargs"
            checkpoint["datamodule_hyper_parameters"] = safe_hparams(datamodule.hparams, type(datamodule).__name__)
        with trainer.hooks.owner_action(datamodule, "state_dict"):
            state = datamodule.state_dict()
        if state:
            checkpoint[type(datamodule).__qualname__] = state
    if not weights_only:
        trainer.hooks.call_checkpoint_hooks("on_save_checkpoint", checkpoint)
    trainer.hooks.call_module("on_save_checkpoint", checkpoint)
    return checkpoint


def save_checkpoint_file(checkpoint: dict[str, Any], path: str, background: bool = False) -> None:
    """Write ``checkpoint`` to ``path`` (local or URI) atomically; a failure keeps the previous file.

    ``background=True`` lets the fsync and rename finish off the training thread (see ``storage``).
    """
    try:
        storage.write_atomic(path, lambda f: torch.save(checkpoint, f), background=background)
    except Exception as err:
        full = _disk_full(path, checkpoint, err)
        reason = full or f"{type(err).__name__}: {err}"
        raise CheckpointError(
            f"Saving the checkpoint to {path!r} failed ({reason}); any previous file there is unchanged."
        ) from err


def _disk_full(path: str, checkpoint: dict[str, Any], err: BaseException) -> str | None:
    """ "no space left on device ..." when the disk is what stopped the write (torch reports it as a position
    mismatch of its zip writer), with the checkpoint's size and the free space; else None."""
    import errno
    import shutil

    if storage.is_remote(path):
        return None
    folder = os.path.dirname(os.path.abspath(storage.local_path(path)))
    needed = sum(t.numel() * t.element_size() for t in _tensors(checkpoint))
    free = shutil.disk_usage(folder).free
    if getattr(err, "errno", None) != errno.ENOSPC and "unexpected pos" not in str(err) and free >= needed:
        return None
    return (
        f"no space left on device at {folder}: the checkpoint needs about {needed / 2**20:.1f} MB, "
        f"{free / 2**20:.1f} MB are free; free some space or save elsewhere"
    )


def _tensors(data: Any) -> list[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        return [data]
    if isinstance(data, Mapping):
        return [t for value in data.values() for t in _tensors(value)]
    if isinstance(data, list | tuple):
        return [t for value in data for t in _tensors(value)]
    return []


def save_trainer_checkpoint(
    trainer: Trainer, path: str, weights_only: bool = False, storage_options: dict[str, Any] | None = None
) -> None:
    """``Trainer.save_checkpoint``: every rank builds the dict (hooks run everywhere), rank 0 writes it."""
    if trainer.lightning_module is None:
        raise MisconfigurationError("`save_checkpoint` needs a model: call it after `fit`, or inside a hook.")
    checkpoint = dump_checkpoint(trainer, weights_only)
    metrics = {
        k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, torch.Tensor) and v.numel() == 1
    }
    metrics.update(epoch=trainer.current_epoch, step=trainer.global_step)
    background = bool((storage_options or {}).get("background"))
    trainer.strategy.save_checkpoint(checkpoint, path, metrics, background=background)
    trainer.strategy.barrier("save_checkpoint")


def safe_hparams(hparams: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Hyperparameters as plain data (what ``weights_only=True`` loads); other values are left out, with a warning."""
    safe, dropped = {}, []
    for key, value in hparams.items():
        plain = _plain(value)
        if plain is _UNSAFE:
            dropped.append(f"{key} ({type(value).__name__})")
        else:
            safe[key] = plain
    if dropped:
        warnings.warn(
            f"{owner}: hyperparameters {dropped} are not plain data and are not saved in checkpoints (they "
            "would need unpickling to load). Pass them to `load_from_checkpoint(path, name=value)`, or leave "
            "them out with `save_hyperparameters(ignore=[...])`.",
            stacklevel=3,
        )
    return safe


_UNSAFE = object()


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor | torch.dtype):
        return value
    if isinstance(value, Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        items = {k: _plain(v) for k, v in value.items()}
        return _UNSAFE if any(v is _UNSAFE for v in items.values()) else items
    if isinstance(value, list | tuple):
        elements = [_plain(v) for v in value]
        if any(v is _UNSAFE for v in elements):
            return _UNSAFE
        return elements if isinstance(value, list) else tuple(elements)
    return _UNSAFE


# ====================================================================== reading
def load_checkpoint_file(path: str, map_location: Any = None) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) with a clear error for missing, corrupt or foreign files."""
    path = os.fspath(path)
    if not storage.exists(path):
        raise CheckpointError(f"Checkpoint {path!r} does not exist.")
    if storage.isdir(path):  # a checkpoint saved through Ray Train: a folder holding the file
        path = storage.join(path, CHECKPOINT_FILE)
    try:
        with storage.open_for_read(path) as f:
            if not zipfile.is_zipfile(f):
                raise CheckpointError(
                    f"Checkpoint {path!r} is corrupt or truncated: it is not a complete torch checkpoint archive "
                    "(an interrupted copy, or not a checkpoint at all). Use an earlier checkpoint."
                )
            f.seek(0)
            checkpoint = torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"Checkpoint {path!r} holds objects that a safe load refuses (it was not written by lightray or "
            f"Lightning with plain data only): {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"Checkpoint {path!r} is corrupt or truncated and cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}). Use an earlier checkpoint."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path!r} is not a lightray/Lightning checkpoint: it has no 'state_dict' entry (found {found}). "
            "To load bare weights use `module.load_state_dict(torch.load(path, weights_only=True))`."
        )
    return checkpoint


def load_state_into_module(module: LightningModule, checkpoint: dict[str, Any], path: str, strict: bool) -> None:
    """Load the checkpoint's weights, naming missing and unexpected keys when they do not fit."""
    result = module.load_state_dict(checkpoint["state_dict"], strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    shape_errors = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(module.state_dict()[k].shape)}"
        for k, v in checkpoint["state_dict"].items()
        if k in module.state_dict() and isinstance(v, torch.Tensor) and v.shape != module.state_dict()[k].shape
    ]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"Checkpoint {path!r} does not fit {type(module).__name__}: missing keys {missing}, unexpected keys "
            f"{unexpected}. Is it a checkpoint of another model? Pass `strict=False` to load what matches."
        )
    if shape_errors:  # load_state_dict already raised for strict; keep the message clear anyway
        raise CheckpointError(f"Checkpoint {path!r} has tensors of other shapes: {shape_errors}")


def _load_weights(trainer: Trainer, checkpoint: dict[str, Any], path: str) -> None:
    module = trainer.lightning_module
    if checkpoint.get(SHARDED):
        trainer.strategy.load_sharded_checkpoint(_folder_of(path), None)
    elif trainer.strategy.shards_state:  # every rank loads the full weights into its shards
        trainer.strategy.load_module_state_dict(module, checkpoint["state_dict"], strict=module.strict_loading)
    else:
        load_state_into_module(module, checkpoint, path, strict=module.strict_loading)


def _folder_of(path: str) -> str:
    """The checkpoint folder of ``path`` (the folder itself, or the folder of its metadata file)."""
    return path if storage.isdir(path) else os.path.dirname(path)


def load_module_from_checkpoint(
    cls: type[LightningModule], path: Any, map_location: Any, strict: bool, **overrides: Any
) -> LightningModule:
    """``LightningModule.load_from_checkpoint``: rebuild from saved hyperparameters, then load weights."""
    path = os.fspath(path)
    checkpoint = load_checkpoint_file(path, map_location=map_location or "cpu")
    if checkpoint.get(SHARDED):
        folder = _folder_of(path)
        raise CheckpointError(
            f"{path!r} is a sharded (FSDP) checkpoint, its weights spread over files of the workers: make one file "
            f"of it with `lightray consolidate {folder} model.ckpt` and load that."
        )
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    name = checkpoint.get("hparams_name")
    if name and name != "kwargs":
        kwargs = {name: {**hparams, **overrides.pop(name, {})}, **overrides}
    else:
        kwargs = {**hparams, **overrides}
    try:
        module = cls(**kwargs)
    except TypeError as err:
        raise CheckpointError(
            f"Could not build {cls.__name__} from the hyperparameters in {path!r} ({err}). Saved "
            f"hyperparameters: {sorted(hparams)}; pass missing or renamed arguments as keyword overrides: "
            f"`{cls.__name__}.load_from_checkpoint(path, name=value)`."
        ) from err
    module.on_load_checkpoint(checkpoint)
    load_state_into_module(module, checkpoint, path, strict)
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        module.to(map_location)
    module.eval()
    return module


# ====================================================================== restoring a trainer
def resolve_ckpt_path(trainer: Trainer, ckpt_path: str) -> str | None:
    """Turn "last" / "best" into a file path (None when "last" finds nothing yet: start fresh)."""
    if ckpt_path == "best":
        callback = trainer.checkpoint_callback
        if callback is None:
            raise MisconfigurationError(
                '`ckpt_path="best"` needs a `ModelCheckpoint` callback; add one, or pass a checkpoint path.'
            )
        if not callback.best_model_path:
            raise MisconfigurationError(
                '`ckpt_path="best"`: the ModelCheckpoint has no best checkpoint yet (give it a `monitor`, and '
                "fit first), or pass a checkpoint path."
            )
        return callback.best_model_path
    if ckpt_path == "last":
        candidates = last_candidates(trainer)
        if not candidates:
            warnings.warn('`ckpt_path="last"` found no checkpoint: training starts from scratch.', stacklevel=3)
            return None
        return candidates[0]
    return os.fspath(ckpt_path)


def last_candidates(trainer: Trainer) -> list[str]:
    """What ``ckpt_path="last"`` may resume from, best first: the ``last*.ckpt`` files, newest first, then, for a
    ModelCheckpoint with ``save_last``, its other checkpoints, newest first (when a kill hit the first write of
    ``last.ckpt``, or it is damaged, an older step checkpoint still resumes the run)."""
    last, others = [], []
    for callback in trainer.checkpoint_callbacks:
        last += callback.last_checkpoint_candidates(trainer)
        if callback.save_last:  # it writes last.ckpt: its other files stand in when that is missing or damaged
            others += callback.saved_checkpoints(trainer)
    ordered = sorted(last, reverse=True) + sorted((c for c in others if c not in last), reverse=True)
    return list(dict.fromkeys(path for _, path in ordered))


class LoadedCheckpoint(NamedTuple):
    checkpoint: dict[str, Any]
    path: str


def load_for_fit(trainer: Trainer) -> LoadedCheckpoint | None:
    """The checkpoint ``fit(ckpt_path=...)`` resumes from, loaded; None to start fresh.

    With ``"last"``, a damaged checkpoint is set aside (renamed ``*.damaged``, with a warning) and the next one
    is tried; only when none is usable does the fit fail, naming each file and its problem.
    """
    if trainer.ckpt_path == "last":
        return load_first_usable(last_candidates(trainer), trainer.is_global_zero, 'ckpt_path="last"')
    path = resolve_ckpt_path(trainer, trainer.ckpt_path) if trainer.ckpt_path is not None else None
    if path is None:
        return None
    return LoadedCheckpoint(load_checkpoint_file(path, map_location="cpu"), path)


def load_first_usable(paths: list[str], set_aside: bool, what: str) -> LoadedCheckpoint | None:
    """The first of ``paths`` that loads and passes the checks; damaged ones before it are renamed
    ``<path>.damaged`` (when ``set_aside``, on one process) with a warning naming the file and why."""
    if not paths:
        warnings.warn(f"`{what}` found no checkpoint: training starts from scratch.", stacklevel=3)
        return None
    problems = []
    for path in paths:
        try:
            return LoadedCheckpoint(load_checkpoint_file(path, map_location="cpu"), path)
        except CheckpointError as err:
            problems.append(f"  - {path}: {err}")
            if set_aside and not storage.is_remote(path) and os.path.exists(storage.local_path(path)):
                aside = storage.local_path(path) + ".damaged"
                os.replace(storage.local_path(path), aside)
                warnings.warn(f"{err} It was moved to {aside}; resuming from the checkpoint before it.", stacklevel=3)
    raise CheckpointError(f"No usable checkpoint for `{what}`; each one failed its checks:\n" + "\n".join(problems))


def restore_weights_for_evaluation(trainer: Trainer) -> None:
    """Load the weights of ``validate``/``test``/``predict(ckpt_path=...)``, if one was given."""
    path = resolve_ckpt_path(trainer, trainer.ckpt_path) if trainer.ckpt_path is not None else None
    if path is not None:
        loaded = load_checkpoint_file(path, map_location="cpu")
        trainer.hooks.call_module("on_load_checkpoint", loaded)
        _load_weights(trainer, loaded, path)


def restore_modules_and_callbacks(trainer: Trainer, loaded: LoadedCheckpoint, with_weights: bool = True) -> None:
    """Weights (unless the caller puts them back itself), datamodule and callback state (before the optimizers
    exist), in Lightning's order."""
    checkpoint, path = loaded
    trainer.hooks.call_module("on_load_checkpoint", checkpoint)
    if with_weights:
        _load_weights(trainer, checkpoint, path)
    datamodule = trainer.datamodule
    if datamodule is not None and type(datamodule).__qualname__ in checkpoint:
        with trainer.hooks.owner_action(datamodule, "load_state_dict"):
            datamodule.load_state_dict(checkpoint[type(datamodule).__qualname__])
    states = checkpoint.get("callbacks") or {}
    trainer.hooks.call_checkpoint_hooks("on_load_checkpoint", checkpoint)
    for callback in trainer.callbacks:
        if callback.state_key in states:
            callback.load_state_dict(states[callback.state_key])


def restore_training_state(trainer: Trainer, loop: FitLoop, loaded: LoadedCheckpoint) -> None:
    """Optimizers, schedulers, precision, metrics, RNG and ``loop``'s position (after the optimizers exist)."""
    checkpoint, path = loaded
    if "optimizer_states" not in checkpoint:
        raise CheckpointError(
            f"{path!r} holds weights only (saved with `weights_only=True`); it can start a new fit through "
            "`load_from_checkpoint`, but cannot resume one."
        )
    optimizer_states = checkpoint["optimizer_states"]
    if len(optimizer_states) != len(trainer.optimizers):
        raise CheckpointError(
            f"{path!r} has {len(optimizer_states)} optimizer states but `configure_optimizers` returned "
            f"{len(trainer.optimizers)} optimizers."
        )
    if checkpoint.get(SHARDED):  # the weights and optimizer state are shards in the checkpoint's folder
        trainer.strategy.load_sharded_checkpoint(_folder_of(path), trainer.optimizers)
    else:
        for optimizer, state in zip(trainer.optimizers, optimizer_states):
            trainer.strategy.load_optimizer_state_dict(trainer.lightning_module, optimizer, state)
    for config, state in zip(trainer.lr_scheduler_configs, checkpoint.get("lr_schedulers", [])):
        config.scheduler.load_state_dict(state)
    trainer.precision_plugin.load_state_dict(checkpoint.get("MixedPrecision", {}))
    trainer.callback_metrics.update(checkpoint.get("callback_metrics", {}))
    loop.load_state_dict(checkpoint["loops"]["fit_loop"], checkpoint.get("rng_states"))

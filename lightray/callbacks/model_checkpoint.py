"""ModelCheckpoint: save checkpoints periodically, keep the top-k by a monitored metric, and a "last" one."""

from __future__ import annotations

import datetime
import os
import re
import time
from typing import TYPE_CHECKING, Any

import torch

from lightray import storage
from lightray.callbacks.checkpoint import Checkpoint
from lightray.errors import MisconfigurationError

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class ModelCheckpoint(Checkpoint):
    """Lightning's ModelCheckpoint: same arguments, file names and top-k rules.

    Runs in the training process; under Ray every rank takes part and rank 0 writes (through
    ``ray.train.report``, so Ray keeps track of the checkpoints).
    """

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1
    monitors_epoch_end = True  # on_train_epoch_end after the module's own: it sees what the module logged

    def __init__(
        self,
        dirpath: str | os.PathLike | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | None = None,
        save_top_k: int = 1,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: datetime.timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise MisconfigurationError(f"ModelCheckpoint(mode={mode!r}): use 'min' or 'max'.")
        if save_top_k < -1:
            raise MisconfigurationError(f"ModelCheckpoint(save_top_k={save_top_k}): must be >= -1.")
        if monitor is None and save_top_k not in (-1, 0, 1):
            raise MisconfigurationError(
                f"ModelCheckpoint(save_top_k={save_top_k}, monitor=None): keeping the top {save_top_k} needs a "
                "metric to rank by; set `monitor`."
            )
        if every_n_train_steps is None and every_n_epochs is None and train_time_interval is None:
            every_n_epochs = 1
        triggers = [(every_n_train_steps or 0) >= 1, (every_n_epochs or 0) >= 1, train_time_interval is not None]
        if sum(triggers) > 1:
            raise MisconfigurationError(
                "ModelCheckpoint: every_n_train_steps, every_n_epochs and train_time_interval are mutually "
                "exclusive; set one of them."
            )
        if (every_n_train_steps or 0) < 0 or (every_n_epochs or 0) < 0:
            raise MisconfigurationError("ModelCheckpoint: every_n_train_steps and every_n_epochs must be >= 0.")
        self.dirpath: str | None = None
        if dirpath is not None:
            path = os.fspath(dirpath)
            local = storage.local_path(path)
            self.dirpath = path if storage.is_remote(path) else os.path.realpath(os.path.expanduser(local))
        self.filename = filename
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.auto_insert_metric_name = auto_insert_metric_name
        self._every_n_train_steps = every_n_train_steps or 0
        self._every_n_epochs = every_n_epochs or 0
        self._train_time_interval = train_time_interval
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self._enable_version_counter = enable_version_counter

        self.best_k_models: dict[str, torch.Tensor] = {}
        self.kth_best_model_path = ""
        self.kth_value = torch.tensor(float("inf") if mode == "min" else float("-inf"))
        self.best_model_score: torch.Tensor | None = None
        self.best_model_path = ""
        self.last_model_path = ""
        self.current_score: torch.Tensor | None = None
        self._last_global_step_saved = 0  # no checkpoint before the first step
        self._last_time_checked: float | None = None
        self._defer_until_validation = False
        self._newest_path = ""  # the latest file this callback saved

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            monitor=self.monitor,
            mode=self.mode,
            every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs,
            train_time_interval=self._train_time_interval,
        )

    @property
    def every_n_epochs(self) -> int:
        return self._every_n_epochs

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.dirpath = self._resolve_dirpath(trainer)
        if stage == "fit" and trainer.is_global_zero and self.save_top_k != 0 and trainer.strategy.run_dir is None:
            storage.check_writable(self.dirpath)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_time_checked = time.monotonic()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._skip(trainer):
            return
        by_steps = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        by_time = False
        if self._train_time_interval is not None and self._last_time_checked is not None:
            now = time.monotonic()
            by_time = now - self._last_time_checked >= self._train_time_interval.total_seconds()
            by_time = trainer.strategy.broadcast(by_time)
            if by_time:
                self._last_time_checked = now
        if not (by_steps or by_time):
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and self.monitor not in candidates:
            self._defer_until_validation = True  # the metric comes with the next validation
            return
        self._save_topk(trainer, candidates)
        self._save_last(trainer, candidates)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._skip(trainer) or not self._save_on_epoch_end(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0:
            self._save_topk(trainer, candidates)
        self._save_last(trainer, candidates)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._skip(trainer) or self._save_on_epoch_end(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if self._defer_until_validation:
            self._defer_until_validation = False
            self._save_topk(trainer, candidates)
            self._save_last(trainer, candidates)
            return
        if self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0:
            self._save_topk(trainer, candidates)
        self._save_last(trainer, candidates)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step and not trainer.fast_dev_run:
            self._save_last(trainer, self._monitor_candidates(trainer))

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "best_model_score": self.best_model_score,
            "best_model_path": self.best_model_path,
            "current_score": self.current_score,
            "dirpath": self.dirpath,
            "best_k_models": dict(self.best_k_models),
            "kth_best_model_path": self.kth_best_model_path,
            "kth_value": self.kth_value,
            "last_model_path": self.last_model_path,
            "last_global_step_saved": self._last_global_step_saved,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            self.best_model_score = state_dict["best_model_score"]
            self.best_k_models = dict(state_dict.get("best_k_models", {}))
            self.kth_best_model_path = state_dict.get("kth_best_model_path", "")
            self.kth_value = state_dict.get("kth_value", self.kth_value)
            self.last_model_path = state_dict.get("last_model_path", "")
            self.current_score = state_dict.get("current_score")
        self.best_model_path = state_dict["best_model_path"]
        self._last_global_step_saved = state_dict.get("last_global_step_saved", self._last_global_step_saved)

    # ------------------------------------------------------------------ names
    def format_checkpoint_name(
        self, metrics: dict[str, Any], filename: str | None = None, ver: int | None = None, prefix: str | None = None
    ) -> str:
        """The file path for ``metrics``, as Lightning names it (e.g. ``epoch=2-step=300.ckpt``)."""
        name = self._format_name(filename or self.filename, dict(metrics), prefix)
        if ver is not None:
            name = self.CHECKPOINT_JOIN_CHAR.join((name, f"v{ver}"))
        name += self.FILE_EXTENSION
        return storage.join(self.dirpath, name) if self.dirpath else name

    def _format_name(self, template: str | None, metrics: dict[str, Any], prefix: str | None) -> str:
        template = template or "{epoch}" + self.CHECKPOINT_JOIN_CHAR + "{step}"
        groups = sorted(re.findall(r"(\{.*?)[:\}]", template), key=len, reverse=True)
        for group in groups:
            key = group[1:]
            if self.auto_insert_metric_name:
                template = template.replace(group, key + self.CHECKPOINT_EQUALS_CHAR + "{" + key)
            template = template.replace(group, f"{{0[{key}]")
            metrics.setdefault(key, torch.tensor(0))
        name = template.format(metrics)
        return self.CHECKPOINT_JOIN_CHAR.join([prefix, name]) if prefix else name

    def _free_path(self, metrics: dict[str, Any], filename: str | None, reusable: str | None) -> str:
        path = self.format_checkpoint_name(metrics, filename)
        version = self.STARTING_VERSION
        while self._enable_version_counter and path != reusable and storage.exists(path):
            path = self.format_checkpoint_name(metrics, filename, ver=version)
            version += 1
        return path

    def last_checkpoint_candidates(self, trainer: Trainer) -> list[tuple[float, str]]:
        """(modification time, path) of the ``last*.ckpt`` files in this callback's folder."""
        folder = self.dirpath or self._resolve_dirpath(trainer)
        pattern = re.compile(rf"^{self.CHECKPOINT_NAME_LAST}(-v\d+)?{re.escape(self.FILE_EXTENSION)}$")
        found = []
        for name in storage.listdir(folder):
            if pattern.match(name):
                path = storage.join(folder, name)
                mtime = os.path.getmtime(storage.local_path(path)) if not storage.is_remote(path) else 0.0
                found.append((mtime, path))
        return found

    def saved_checkpoints(self, trainer: Trainer) -> list[tuple[float, str]]:
        """(modification time, path) of every checkpoint file in this callback's folder."""
        folder = self.dirpath or self._resolve_dirpath(trainer)
        found = []
        for name in storage.listdir(folder):
            if name.endswith(self.FILE_EXTENSION) and not name.startswith("."):
                path = storage.join(folder, name)
                mtime = os.path.getmtime(storage.local_path(path)) if not storage.is_remote(path) else 0.0
                found.append((mtime, path))
        return found

    # ------------------------------------------------------------------ saving
    def _skip(self, trainer: Trainer) -> bool:
        return (
            bool(trainer.fast_dev_run)
            or trainer.state.fn != "fit"
            or trainer.sanity_checking
            or self._last_global_step_saved == trainer.global_step
        )

    def _save_on_epoch_end(self, trainer: Trainer) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        if trainer.check_val_every_n_epoch != 1:
            return False
        if sum(trainer.num_val_batches) == 0:
            return True
        return trainer.val_check_interval == 1.0

    def _monitor_candidates(self, trainer: Trainer) -> dict[str, Any]:
        candidates = {
            k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in trainer.callback_metrics.items()
        }
        candidates["epoch"] = torch.tensor(trainer.current_epoch)
        candidates["step"] = torch.tensor(trainer.global_step)
        return candidates

    def _save_topk(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        if self.save_top_k == 0:
            return
        if self.monitor is None:
            path = self._free_path(candidates, None, self.best_model_path)
            previous, self.best_model_path = self.best_model_path, path
            self._save(trainer, path)
            if self.save_top_k == 1 and previous and previous != path:
                self._remove(trainer, previous)
            return
        current = candidates.get(self.monitor)
        if current is None:
            raise MisconfigurationError(
                f"ModelCheckpoint(monitor={self.monitor!r}) found no such metric; logged metrics: "
                f"{sorted(k for k in candidates if k not in ('epoch', 'step'))}. Log it with "
                f"`self.log({self.monitor!r}, value)`, or monitor one of these."
            )
        if self._better_than_kth(trainer, current):
            self._update_best_and_save(trainer, current, candidates)

    def _better_than_kth(self, trainer: Trainer, current: torch.Tensor) -> bool:
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        better = torch.lt if self.mode == "min" else torch.gt
        decision = bool(better(current, self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(decision)

    def _update_best_and_save(self, trainer: Trainer, current: torch.Tensor, candidates: dict[str, Any]) -> None:
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        to_delete = None
        if len(self.best_k_models) == k and k > 0:
            to_delete = self.kth_best_model_path
            self.best_k_models.pop(to_delete)
        if torch.isnan(current):
            current = torch.tensor(float("inf") if self.mode == "min" else float("-inf"))
        path = self._free_path(candidates, None, to_delete)
        self.current_score = current
        self.best_k_models[path] = current
        if len(self.best_k_models) == k:
            worst = max if self.mode == "min" else min
            self.kth_best_model_path = worst(self.best_k_models, key=lambda p: float(self.best_k_models[p]))
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        best = min if self.mode == "min" else max
        self.best_model_path = best(self.best_k_models, key=lambda p: float(self.best_k_models[p]))
        self.best_model_score = self.best_k_models[self.best_model_path]
        if self.verbose and trainer.is_global_zero:
            print(
                f"Epoch {trainer.current_epoch}, global step {trainer.global_step}: {self.monitor!r} reached "
                f"{float(current):0.5f} (best {float(self.best_model_score):0.5f}), saving model to {path!r} as top {k}"
            )
        self._save(trainer, path)
        if to_delete and to_delete != path:
            self._remove(trainer, to_delete)

    def _save_last(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        if not self.save_last:
            return
        if trainer.strategy.run_dir is not None and self._last_global_step_saved == trainer.global_step:
            # under Ray the newest checkpoint is always kept: it is the "last" one, no second copy needed
            self.last_model_path = self.best_model_path if self.monitor is None else self._newest_path
            return
        path = self._free_path(candidates, self.CHECKPOINT_NAME_LAST, self.last_model_path)
        previous, self.last_model_path = self.last_model_path, path
        self._save(trainer, path)
        if previous and previous != path and previous not in self.best_k_models and previous != self.best_model_path:
            self._remove(trainer, previous)

    def _save(self, trainer: Trainer, path: str) -> None:
        self._newest_path = path
        # durable and renamed into place off the training thread; removals of older files wait for it
        trainer.save_checkpoint(path, weights_only=self.save_weights_only, storage_options={"background": True})
        self._last_global_step_saved = trainer.global_step

    def _remove(self, trainer: Trainer, path: str) -> None:
        trainer.strategy.remove_checkpoint(path)

    def _resolve_dirpath(self, trainer: Trainer) -> str:
        run_dir = trainer.strategy.run_dir
        if run_dir is not None:  # under Ray, checkpoints go where Ray Train keeps the run's checkpoints
            return run_dir
        if self.dirpath is not None:
            return self.dirpath
        logger = trainer.logger
        if logger is not None:
            save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
            version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
            return os.path.join(save_dir, str(logger.name), version, "checkpoints")
        return os.path.join(trainer.default_root_dir, "checkpoints")

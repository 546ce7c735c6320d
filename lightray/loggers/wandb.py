"""WandbLogger: metrics, hyperparameters and media in a Weights & Biases run (online, or offline in a local folder).

Runs where lightray's loggers run: in the training process, and there on global rank 0 only (in-process, or on
rank 0 of a Ray Train run, which gets its own copy of the logger from the driver).
"""

from __future__ import annotations

import inspect
import json
import os
import secrets
import string
from argparse import Namespace
from typing import Any, Literal

from lightray.errors import MisconfigurationError
from lightray.loggers.logger import Logger
from lightray.utilities.rank_zero import rank_zero_warn


class WandbLogger(Logger):
    """Logs to Weights & Biases (``pip install 'lightray[wandb]'``), with Lightning's WandbLogger arguments.

    The run (``experiment``) is created on first use with ``wandb.init`` (an active ``wandb.run`` is reused);
    ``offline=True`` keeps it in ``<save_dir>/wandb/offline-run-*`` for ``wandb sync``. Metrics are logged with
    ``trainer/global_step``, the x-axis of their charts. ``**kwargs`` go to ``wandb.init`` (entity, group, tags, ...).

    Writes from global rank 0 of the training process. On a Ray Train run, rank 0 uses a copy of this logger carried
    from the driver: it starts (or resumes, with the same id in every stage of one Trainer) the run there, and
    finishes it when the stage ends, as that worker process goes away with it. In this process, as in Lightning, the
    run stays open after a stage (``wandb.finish()`` or the end of the program closes it).

    ``log_model`` (checkpoints as artifacts) is not supported: lightray's ModelCheckpoint does not tell loggers about
    the checkpoints it saves. Log them with ``logger.experiment.log_artifact`` if needed.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike = ".",
        version: str | None = None,
        offline: bool = False,
        dir: str | os.PathLike | None = None,
        id: str | None = None,
        anonymous: bool | None = None,
        project: str | None = None,
        log_model: Literal["all"] | bool = False,
        experiment: Any = None,
        prefix: str = "",
        checkpoint_name: str | None = None,
        add_file_policy: Literal["mutable", "immutable"] = "mutable",
        **kwargs: Any,
    ) -> None:
        try:
            import wandb  # noqa: F401
        except ImportError as err:
            raise MisconfigurationError("WandbLogger needs wandb: `pip install 'lightray[wandb]'`.") from err
        if log_model is not False:
            raise MisconfigurationError(
                f"WandbLogger(log_model={log_model!r}) is not supported by lightray: its ModelCheckpoint does not "
                "tell loggers about saved checkpoints (no `after_save_checkpoint`), so none would be uploaded. Use "
                "log_model=False and log checkpoints yourself with `logger.experiment.log_artifact(...)`."
            )
        self._offline = offline
        self._log_model = log_model
        self._prefix = prefix
        self._experiment = experiment
        self._checkpoint_name = checkpoint_name
        self.add_file_policy = add_file_policy
        folder = save_dir or dir  # as Lightning: `dir` only when save_dir is None or empty
        self._save_dir = os.fspath(folder) if folder is not None else None
        self._project = project or os.environ.get("WANDB_PROJECT", "lightning_logs")
        self._name = name
        self._id = version or id
        self._init_kwargs: dict[str, Any] = {"name": name, "project": self._project, "dir": self._save_dir,
                                             "resume": "allow"}  # fmt: skip
        if anonymous:
            self._init_kwargs["anonymous"] = "allow"
        if offline:
            self._init_kwargs["mode"] = "offline"
        self._init_kwargs.update(kwargs)
        self._carried = False  # a copy unpickled in another process (a Ray Train worker)

    def __getstate__(self) -> dict[str, Any]:
        # The run object stays here; the copy starts or resumes the run with the same id, which this logger keeps
        # too, so that every stage of a Trainer on Ray logs to one run.
        if self._experiment is not None:
            self._id = self._experiment.id
        elif self._id is None:
            self._id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        state = self.__dict__.copy()
        state["_experiment"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._carried = True

    @property
    def experiment(self) -> Any:
        """The ``wandb`` Run, created on first use (or the active ``wandb.run``): ``logger.experiment.log(...)``."""
        if self._experiment is None:
            import wandb

            if wandb.run is not None:
                rank_zero_warn(
                    "There is a wandb run already in progress and newly created instances of `WandbLogger` will reuse"
                    " this run. If this is not desired, call `wandb.finish()` before instantiating `WandbLogger`."
                )
                self._experiment = wandb.run
            else:
                if self._save_dir:
                    os.makedirs(self._save_dir, exist_ok=True)
                self._experiment = wandb.init(**{**self._init_kwargs, "id": self._id})
                if callable(getattr(self._experiment, "define_metric", None)):
                    if self._init_kwargs.get("sync_tensorboard"):
                        self._experiment.define_metric("*", step_metric="global_step")
                    else:
                        self._experiment.define_metric("trainer/global_step")
                        self._experiment.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        return self._experiment

    @property
    def name(self) -> str | None:
        """The project (not the run's display name, which is ``experiment.name``)."""
        return self._project

    @property
    def version(self) -> str | None:
        """The run's id. Creates the run when no id is known yet: Lightning's Trainer creates it before the
        callbacks' ``setup``, where ModelCheckpoint puts checkpoints under ``<save_dir>/<project>/<id>``."""
        if self._experiment is None and self._id is None:
            self.experiment  # noqa: B018 - creates the run
        return self._experiment.id if self._experiment is not None else self._id

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    @property
    def log_dir(self) -> str | None:
        """``save_dir``: what Lightning's ``trainer.log_dir`` is with this logger (the run itself is in
        ``<save_dir>/wandb``)."""
        return self._save_dir

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        if isinstance(params, Namespace):
            params = vars(params)
        plain = {str(k): _json_or_str(_named_callable(v)) for k, v in (params or {}).items()}
        self.experiment.config.update(plain, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        row = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}" if self._prefix else k: v for k, v in metrics.items()}
        if step is not None and not self._init_kwargs.get("sync_tensorboard"):
            row["trainer/global_step"] = step
        self.experiment.log(row)

    def log_table(self, key: str, columns: list[Any] | None = None, data: list[list[Any]] | None = None,
                  dataframe: Any = None, step: int | None = None) -> None:  # fmt: skip
        """A ``wandb.Table`` from ``columns`` and ``data``, or from a ``dataframe``."""
        import wandb

        self.log_metrics({key: wandb.Table(columns=columns, data=data, dataframe=dataframe)}, step)

    def log_text(self, key: str, columns: list[str] | None = None, data: list[list[str]] | None = None,
                 dataframe: Any = None, step: int | None = None) -> None:  # fmt: skip
        """Text, as a table."""
        self.log_table(key, columns, data, dataframe, step)

    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Images (tensors, arrays, PIL images or paths); each keyword is a list with one value per image
        (``caption``, ``masks``, ...)."""
        import wandb

        self.log_metrics({key: _media(wandb.Image, images, "images", kwargs)}, step)

    def log_audio(self, key: str, audios: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Audio (arrays or paths); each keyword is a list with one value per clip (``sample_rate``, ...)."""
        import wandb

        self.log_metrics({key: _media(wandb.Audio, audios, "audios", kwargs)}, step)

    def log_video(self, key: str, videos: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Videos (arrays or paths); each keyword is a list with one value per video (``fps``, ``format``, ...)."""
        import wandb

        self.log_metrics({key: _media(wandb.Video, videos, "videos", kwargs)}, step)

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Any:
        """Marks ``artifact`` as used by this run and returns it."""
        return self.experiment.use_artifact(artifact, type=artifact_type)

    @staticmethod
    def download_artifact(artifact: str, save_dir: str | os.PathLike | None = None,
                          artifact_type: str | None = None, use_artifact: bool | None = True) -> str:  # fmt: skip
        """Downloads ``artifact`` (through the active run when there is one and ``use_artifact``); its folder."""
        import wandb

        if wandb.run is not None and use_artifact:
            found = wandb.run.use_artifact(artifact)
        else:
            found = wandb.Api().artifact(artifact, type=artifact_type)
        return found.download(root=None if save_dir is None else os.fspath(save_dir))

    def finalize(self, status: str) -> None:
        if self._carried and self._experiment is not None:  # the worker process ends with the stage
            self._experiment.finish(exit_code=0 if status == "success" else 1)
            self._experiment = None


def _named_callable(value: Any) -> Any:
    """As Lightning logs callables: a class by its name; a function by what it returns, else by its name."""
    if inspect.isclass(value):
        return value.__name__
    if callable(value):
        try:
            result = value()
        except Exception:
            return getattr(value, "__name__", None)
        return value.__name__ if callable(result) else result
    return value


def _json_or_str(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    try:
        json.dumps(value)
    except (TypeError, OverflowError):
        return str(value)
    return value


def _media(kind: Any, items: list[Any], what: str, kwargs: dict[str, list[Any]]) -> list[Any]:
    if not isinstance(items, list):
        raise TypeError(f'Expected a list as "{what}", found {type(items)}')
    for key, values in kwargs.items():
        if len(values) != len(items):
            raise ValueError(f"Expected {len(items)} items but only found {len(values)} for {key}")
    return [kind(item, **{key: values[i] for key, values in kwargs.items()}) for i, item in enumerate(items)]

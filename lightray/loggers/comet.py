"""CometLogger: metrics, parameters and the model graph in a Comet experiment (online, or an offline archive).

Runs where lightray's loggers run: in the training process, and there on global rank 0 only (in-process, or on
rank 0 of a Ray Train run, which gets its own copy of the logger from the driver).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
import uuid
from argparse import Namespace
from collections.abc import Iterator
from typing import Any, Literal

from lightray.errors import MisconfigurationError
from lightray.loggers.logger import Logger

log = logging.getLogger("lightray")

# Lightning's deprecated argument names: (old, new)
_RENAMED = (("experiment_name", "name"), ("project_name", "project"), ("save_dir", "offline_directory"))


class CometLogger(Logger):
    """Logs to Comet (``pip install 'lightray[comet]'``), with Lightning's CometLogger arguments; ``**kwargs`` go to
    ``comet_ml.ExperimentConfig`` (``name``, ``offline_directory``, ``tags``, ``log_code``, ...).

    ``online=False`` makes an ``OfflineExperiment``: its archive (``<offline_directory>/<key>-*.zip``, for
    ``comet upload``) is written when the experiment ends. ``online=None`` leaves the choice to Comet's
    configuration (``COMET_START_ONLINE``). The experiment is created on first use (``experiment``, or
    ``version`` with no ``experiment_key`` given), not in the constructor as Lightning does, so that a Ray run's
    driver makes none.

    Writes from global rank 0 of the training process. On a Ray Train run, rank 0 uses a copy of this logger carried
    from the driver: it creates (or continues, with the same key in every stage of one Trainer) the experiment
    there, and ends it when the stage ends, as that worker process goes away with it. In this process, as in
    Lightning, a stage's end only flushes it (``logger.experiment.end()`` or the end of the program ends it).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        workspace: str | None = None,
        project: str | None = None,
        experiment_key: str | None = None,
        mode: Literal["get_or_create", "get", "create"] | None = None,
        online: bool | None = None,
        prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        # before comet_ml's first import: its automatic logging would patch torch
        os.environ["COMET_DISABLE_AUTO_LOGGING"] = "1"
        try:
            import comet_ml
        except ImportError as err:
            raise MisconfigurationError("CometLogger needs comet_ml: `pip install 'lightray[comet]'`.") from err
        for old, new in _RENAMED:
            if old in kwargs:
                log.warning(f"The parameter `{old}` is deprecated, please use `{new}` instead.")
                value = kwargs.pop(old)
                if new == "project":
                    project = value if project is None else project
                else:
                    kwargs.setdefault(new, value)
        if "offline" in kwargs:
            log.warning("The parameter `offline` is deprecated, please use `online` instead.")
            offline = kwargs.pop("offline")
            if online is None and offline is not None:
                online = not offline
        self._api_key = api_key
        self._workspace = workspace
        self._project_name = project
        self._experiment_key = experiment_key
        self._mode = mode
        self._online = online
        self._prefix = prefix
        self._kwargs = kwargs
        self._comet_config = comet_ml.ExperimentConfig(**kwargs)
        self._experiment: Any = None
        self._carried = False  # a copy unpickled in another process (a Ray Train worker)

    def __getstate__(self) -> dict[str, Any]:
        # The experiment stays here; the copy creates or continues it with the same key, which this logger keeps
        # too, so that every stage of a Trainer on Ray logs to one experiment.
        if self._experiment is not None:
            self._experiment_key = self._experiment.get_key()
        elif self._experiment_key is None:
            self._experiment_key = uuid.uuid4().hex
        state = self.__dict__.copy()
        state["_experiment"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._carried = True

    @property
    def experiment(self) -> Any:
        """The Comet experiment (``Experiment``, ``ExistingExperiment`` or ``OfflineExperiment``), created on first
        use with ``comet_ml.start``."""
        if self._experiment is None:
            import comet_ml

            if self._comet_config.offline_directory:
                os.makedirs(self._comet_config.offline_directory, exist_ok=True)
            with _code_of_the_program():
                self._experiment = comet_ml.start(api_key=self._api_key, workspace=self._workspace,
                                                  project=self._project_name, experiment_key=self._experiment_key,
                                                  mode=self._mode, online=self._online,
                                                  experiment_config=self._comet_config)  # fmt: skip
            if self._experiment is None:
                raise comet_ml.exceptions.ExperimentNotFound("Failed to create Comet experiment.")
            self._experiment_key = self._experiment.get_key()
            self._project_name = self._experiment.project_name
            self._experiment.log_other("Created from", "lightray")
        return self._experiment

    @property
    def name(self) -> str | None:
        """The project's name (Comet's default project when none was given, once the experiment exists)."""
        return self._project_name

    @property
    def version(self) -> str | None:
        """The experiment's key. Creates the experiment when no key is known yet: Lightning's logger has one from
        its constructor, and ModelCheckpoint puts checkpoints under ``<save_dir>/<project>/<key>``."""
        if self._experiment is None and self._experiment_key is None:
            self.experiment  # noqa: B018 - creates the experiment
        return self._experiment.get_key() if self._experiment is not None else self._experiment_key

    @property
    def save_dir(self) -> str | None:
        """``offline_directory``: where an offline experiment's archive goes."""
        return self._comet_config.offline_directory

    @property
    def log_dir(self) -> str | None:
        """``save_dir``: what Lightning's ``trainer.log_dir`` is with this logger."""
        return self.save_dir

    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        if isinstance(params, Namespace):
            params = vars(params)
        self.experiment.log_parameters(dict(params or {}), nested_support=True)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        values = {k: v.detach().cpu() if hasattr(v, "detach") else v for k, v in metrics.items()}
        epoch = values.pop("epoch", None)
        if isinstance(epoch, float) and epoch.is_integer():
            epoch = int(epoch)  # the loop hands every number over as a float; Comet's epoch is an int
        self.experiment.log_metrics(values, prefix=self._prefix, step=step, epoch=epoch)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """The model's description, in the experiment's Graph tab (when the experiment exists, as in Lightning)."""
        if self._experiment is not None:
            self._experiment.set_model_graph(model)

    def finalize(self, status: str) -> None:
        if self._experiment is None:
            return
        if self._carried:  # the worker process ends with the stage: the archive or upload completes now
            self._experiment.end()
            self._experiment = None
        else:
            self._experiment.flush()


# packages whose frames are not the program that made the experiment: comet_ml's own list and lightray's stack
_LIBRARIES = ("comet_ml", "mlflow", "transformers", "ludwig", "pytorch_lightning", "metaflow", "lightray", "ray")


@contextlib.contextmanager
def _code_of_the_program() -> Iterator[None]:
    """comet_ml uploads the source of the first module up the stack outside a list of libraries that names
    pytorch_lightning but not lightray: without this, lightray's logger would be "the code" of every experiment
    (and Ray's worker script on a Ray run, where no frame is the user's and nothing is uploaded instead)."""
    import comet_ml.experiment

    if not callable(getattr(comet_ml.experiment, "get_caller_file_path", None)):
        yield  # a comet_ml that finds the caller differently
        return
    folders = tuple(os.path.dirname(m.__file__) + os.sep for n in _LIBRARIES
                    if (m := sys.modules.get(n)) is not None and m.__file__)  # fmt: skip

    def caller() -> tuple[str, str] | None:
        for frame in inspect.stack(context=0):
            module = inspect.getmodule(frame.frame)
            path = getattr(module, "__file__", None)
            if module is None or not path or module.__name__.split(".")[0] in _LIBRARIES or path.startswith(folders):
                continue
            return module.__name__, path.rstrip("cd")
        return None

    original = comet_ml.experiment.get_caller_file_path
    comet_ml.experiment.get_caller_file_path = caller
    try:
        yield
    finally:
        comet_ml.experiment.get_caller_file_path = original

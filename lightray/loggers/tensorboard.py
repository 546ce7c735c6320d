"""TensorBoardLogger: event files under ``<save_dir>/<name>/version_N`` (tensorboard or tensorboardX)."""

from __future__ import annotations

import os
from typing import Any

from lightray.errors import MisconfigurationError
from lightray.loggers.csv import write_hparams_yaml
from lightray.loggers.logger import FolderLogger


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        return SummaryWriter
    except ImportError:
        pass
    try:
        import tensorboardX

        return tensorboardX.SummaryWriter
    except ImportError as err:
        raise MisconfigurationError(
            "TensorBoardLogger needs `tensorboard` or `tensorboardX`: `pip install tensorboardX`."
        ) from err


class TensorBoardLogger(FolderLogger):
    """Writes scalars (and hyperparameters) for TensorBoard. Driver-free: writes from global rank 0."""

    def __init__(
        self,
        save_dir: str | os.PathLike,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        default_hp_metric: bool = True,
        prefix: str = "",
        **writer_kwargs: Any,
    ) -> None:
        super().__init__(save_dir, name, version)
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._writer_kwargs = writer_kwargs
        self._writer_class = _summary_writer_class()  # fail now, not at the first log
        self._experiment: Any = None
        self._hparams: dict[str, Any] = {}

    @property
    def experiment(self) -> Any:
        """The SummaryWriter, for anything beyond scalars (images, histograms, ...)."""
        if self._experiment is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = self._writer_class(log_dir=self.log_dir, **self._writer_kwargs)
        return self._experiment

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.experiment.add_scalar(f"{self._prefix}{key}", value, step)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self._hparams.update(params)
        write_hparams_yaml(self.log_dir, self._hparams)
        simple = {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in params.items()}
        if not self._default_hp_metric:
            return
        metrics = {"hp_metric": -1.0}
        self.log_metrics(metrics)
        # the hparams summary goes into this run's one event file, as Lightning writes it (add_hparams would
        # open a second writer)
        if self._writer_class.__module__.startswith("torch"):
            from torch.utils.tensorboard.summary import hparams as summaries
        else:
            from tensorboardX.summary import hparams as summaries  # type: ignore[no-redef]
        writer = self.experiment.file_writer
        for summary in summaries(simple, metrics):
            writer.add_summary(summary)

    def save(self) -> None:
        if self._experiment is not None:
            self._experiment.flush()

    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self._experiment.flush()
            self._experiment.close()
            self._experiment = None

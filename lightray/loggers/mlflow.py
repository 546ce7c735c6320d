"""MLFlowLogger: metrics, parameters and run status in an MLflow tracking store (a local folder or a server)."""

from __future__ import annotations

import os
import time
from typing import Any

from lightray.errors import MisconfigurationError
from lightray.loggers.logger import Logger


class MLFlowLogger(Logger):
    """Logs to MLflow (``pip install mlflow-skinny`` or ``mlflow``). Writes from global rank 0.

    ``tracking_uri`` defaults to ``$MLFLOW_TRACKING_URI``, else ``file:<save_dir>`` (``./mlruns``).
    """

    def __init__(
        self,
        experiment_name: str = "lightning_logs",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        save_dir: str | None = "./mlruns",
        prefix: str = "",
        run_id: str | None = None,
    ) -> None:
        try:
            import mlflow  # noqa: F401
        except ImportError as err:
            raise MisconfigurationError("MLFlowLogger needs mlflow: `pip install mlflow-skinny`.") from err
        if tracking_uri is None:
            tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"file:{os.path.abspath(save_dir or './mlruns')}"
        if tracking_uri.startswith("file:"):
            # MLflow 3 keeps its file store only behind this switch; a local folder is what was asked for.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._tracking_uri = tracking_uri
        self._experiment_name = experiment_name
        self._run_name = run_name
        self._tags = tags or {}
        self._save_dir = save_dir
        self._prefix = prefix
        self._run_id = run_id
        self._experiment_id: str | None = None
        self._client: Any = None

    @property
    def experiment(self) -> Any:
        """The ``MlflowClient``; the experiment and run are created on first use."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self._tracking_uri)
            if self._run_id is not None:
                self._experiment_id = self._client.get_run(self._run_id).info.experiment_id
                return self._client
            found = self._client.get_experiment_by_name(self._experiment_name)
            self._experiment_id = (
                found.experiment_id if found is not None else self._client.create_experiment(self._experiment_name)
            )
            tags = {k: str(v) for k, v in self._tags.items()}
            if self._run_name:
                tags["mlflow.runName"] = self._run_name
            self._run_id = self._client.create_run(self._experiment_id, tags=tags).info.run_id
        return self._client

    @property
    def name(self) -> str | None:
        self.experiment  # noqa: B018 - creates the experiment
        return self._experiment_id

    @property
    def version(self) -> str | None:
        self.experiment  # noqa: B018 - creates the run
        return self._run_id

    @property
    def run_id(self) -> str | None:
        return self.version

    @property
    def save_dir(self) -> str | None:
        uri = self._tracking_uri
        return uri[len("file:") :] if uri.startswith("file:") else None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(f"{self._prefix}{k}", float(v), now, step or 0) for k, v in metrics.items()]
        self.experiment.log_batch(self._run_id, metrics=entries)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        entries = [Param(str(k), str(v)[:500]) for k, v in params.items()]
        self.experiment.log_batch(self._run_id, params=entries)

    def finalize(self, status: str) -> None:
        if self._client is None:
            return
        state = {"success": "FINISHED", "failed": "FAILED", "finished": "FINISHED"}.get(status, "FINISHED")
        self._client.set_terminated(self._run_id, state)

"""Progress: one bar per stage with a known total, or a compact line every N steps when not on a TTY.

The callback works out *what* to show (stage, position, total, the metrics logged with
``prog_bar=True``) and hands it to a renderer that decides *how*: a tqdm bar, a plain line, or,
under Ray, a forwarder that sends rank 0's progress to the driver, which renders the job's one bar.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol

from lightray.callbacks.callback import Callback

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class Renderer(Protocol):
    def start(self, stage: str, description: str, total: float) -> None: ...

    def update(self, stage: str, n: int, metrics: dict[str, float]) -> None: ...

    def close(self, stage: str) -> None: ...


class LineRenderer:
    """For logs and CI: a line per ``every_n_steps`` training batches and one at each stage's end."""

    def __init__(self, every_n_steps: int = 50, stream: Any = None) -> None:
        self.every_n_steps = every_n_steps
        self.stream = stream
        self.state: dict[str, tuple[str, float, float, int, dict[str, float]]] = {}

    def start(self, stage: str, description: str, total: float) -> None:
        self.state[stage] = (description, total, time.monotonic(), 0, {})

    def update(self, stage: str, n: int, metrics: dict[str, float]) -> None:
        if stage not in self.state:
            return
        description, total, started, _, _ = self.state[stage]
        self.state[stage] = (description, total, started, n, metrics)
        if stage == "train" and n % self.every_n_steps == 0:
            self._print(stage)

    def close(self, stage: str) -> None:
        if stage in self.state:
            self._print(stage)
            del self.state[stage]

    def write(self, stream: str, text: str) -> None:
        print(text, end="", file=self.stream or getattr(sys, stream), flush=True)

    def _print(self, stage: str) -> None:
        description, total, started, n, metrics = self.state[stage]
        elapsed = time.monotonic() - started
        of_total = "" if math.isinf(total) else f"/{int(total)}"
        rate = f", {n / elapsed:.1f} it/s" if elapsed >= 0.05 else ""
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        print(f"{description}: {n}{of_total} [{elapsed:.1f}s{rate}] {shown}".rstrip(),
              file=self.stream or sys.stdout, flush=True)  # fmt: skip


def default_renderer(every_n_steps: int = 50) -> Renderer:
    from lightray.callbacks.progress.tqdm_progress import TqdmRenderer

    return TqdmRenderer() if sys.stderr.isatty() else LineRenderer(every_n_steps)


class ProgressBar(Callback):
    """Lightning's progress bar (on by default). Only global rank 0 shows anything.

    ``refresh_rate`` batches between updates; the shown metrics are read at most every
    ``metrics_interval`` seconds (reading them is what costs a device sync).
    """

    def __init__(self, refresh_rate: int = 1, line_every_n_steps: int = 50, metrics_interval: float = 0.5,
                 renderer: Renderer | None = None) -> None:  # fmt: skip
        self.refresh_rate = refresh_rate
        self.metrics_interval = metrics_interval
        self.renderer = renderer or default_renderer(line_every_n_steps)
        self._metrics: dict[str, float] = {}
        self._metrics_read = 0.0

    def _active(self, trainer: Trainer) -> bool:
        return trainer.is_global_zero and self.refresh_rate > 0

    def _shown_metrics(self, trainer: Trainer, force: bool = False) -> dict[str, float]:
        now = time.monotonic()
        if force or now - self._metrics_read >= self.metrics_interval:
            self._metrics_read = now
            metrics = {}
            for key, value in trainer.progress_bar_metrics.items():
                try:
                    metrics[key] = float(value)
                except (TypeError, ValueError):
                    continue
            self._metrics = metrics
        return self._metrics

    # training
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self.renderer.start("train", f"Epoch {trainer.current_epoch}", trainer.num_training_batches)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._active(trainer) and (batch_idx + 1) % self.refresh_rate == 0:
            self.renderer.update("train", batch_idx + 1, self._shown_metrics(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self.renderer.update("train", trainer.fit_loop.state.batch_idx, self._shown_metrics(trainer, force=True))
            self.renderer.close("train")

    # evaluation
    def _eval_stage(self, trainer: Trainer) -> str:
        return "sanity" if trainer.sanity_checking else ("test" if trainer.testing else "validate")

    def _start_eval(self, trainer: Trainer) -> None:
        if self._active(trainer):
            stage = self._eval_stage(trainer)
            label = {"sanity": "Sanity Checking", "test": "Testing", "validate": "Validation"}[stage]
            self.renderer.start(stage, label, sum(trainer.eval_progress.limits))

    def _update_eval(self, trainer: Trainer, batch_idx: int) -> None:
        if self._active(trainer) and (batch_idx + 1) % self.refresh_rate == 0:
            self.renderer.update(self._eval_stage(trainer), trainer.eval_progress.done, {})

    def _end_eval(self, trainer: Trainer) -> None:
        if self._active(trainer):
            stage = self._eval_stage(trainer)
            self.renderer.update(stage, trainer.eval_progress.done, {})
            self.renderer.close(stage)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_eval(trainer)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        self._update_eval(trainer, batch_idx)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_eval(trainer)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_eval(trainer)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        self._update_eval(trainer, batch_idx)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_eval(trainer)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self.renderer.start("predict", "Predicting", sum(trainer.eval_progress.limits))

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        if self._active(trainer) and (batch_idx + 1) % self.refresh_rate == 0:
            self.renderer.update("predict", trainer.eval_progress.done, {})

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self.renderer.update("predict", trainer.eval_progress.done, {})
            self.renderer.close("predict")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        finish = getattr(self.renderer, "finish", None)  # a renderer with a live display ends it here
        if self._active(trainer) and finish is not None:
            finish()

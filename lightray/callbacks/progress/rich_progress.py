"""Lightning's ``RichProgressBar``: a rich live bar per stage. Needs ``rich``, the ``rich`` extra
(``pip install 'lightray[rich]'``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lightray.callbacks.progress.progress_bar import ProgressBar


def rich_missing(name: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(
        f"`{name}` needs `rich`: pip install 'lightray[rich]' (or rich); or use TQDMProgressBar / ModelSummary."
    )


def require_rich(name: str) -> None:
    try:
        import rich  # noqa: F401
    except ImportError:
        raise rich_missing(name) from None


@dataclass
class RichProgressBarTheme:
    """Styles of the bar's parts (rich style strings), as Lightning's theme names them."""

    description: str = ""
    progress_bar: str = "#6206E0"
    progress_bar_finished: str = "#6206E0"
    progress_bar_pulse: str = "#6206E0"
    batch_progress: str = ""
    time: str = "dim"
    processing_speed: str = "dim underline"
    metrics: str = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


class RichRenderer:
    """Draws the stages' bars in one rich live display: the training bar stays, the validation bar inside
    training disappears when validation ends (as Lightning's), the display closes when no stage is open."""

    def __init__(self, theme: RichProgressBarTheme, console_kwargs: dict[str, Any] | None, leave: bool) -> None:
        self.theme, self.console_kwargs, self.leave = theme, dict(console_kwargs or {}), leave
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.last_train: Any = None  # the latest finished training bar

    def _live(self) -> Any:
        if self.progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            theme = self.theme
            self.progress = Progress(
                TextColumn("[progress.description]{task.description}", style=theme.description),
                BarColumn(
                    complete_style=theme.progress_bar,
                    finished_style=theme.progress_bar_finished,
                    pulse_style=theme.progress_bar_pulse,
                ),  # fmt: skip
                TextColumn("{task.completed}/{task.fields[total_text]}", style=theme.batch_progress),
                TimeElapsedColumn(),
                TextColumn("•", style=theme.time),
                TimeRemainingColumn(),
                TextColumn("{task.fields[speed]}", style=theme.processing_speed),
                TextColumn("{task.fields[metrics]}", style=theme.metrics),
                console=Console(**self.console_kwargs),
                auto_refresh=False,
            )
            self.progress.start()
        return self.progress

    def start(self, stage: str, description: str, total: float) -> None:
        self.close(stage)
        known = not math.isinf(total)
        self.tasks[stage] = self._live().add_task(
            description, total=int(total) if known else None, total_text=str(int(total)) if known else "?",
            speed="", metrics="",
        )  # fmt: skip

    def update(self, stage: str, n: int, metrics: dict[str, float]) -> None:
        task = self.tasks.get(stage)
        if task is None:
            return
        theme = self.theme
        shown = theme.metrics_text_delimiter.join(f"{k}: {v:{theme.metrics_format}}" for k, v in metrics.items())
        self.progress.update(task, completed=n, metrics=shown)
        speed = self.progress.tasks[task].speed if task < len(self.progress.tasks) else None
        self.progress.update(task, speed=f"{speed:.2f}it/s" if speed else "")
        self.progress.refresh()

    def close(self, stage: str) -> None:
        task = self.tasks.pop(stage, None)
        if task is None:
            return
        if stage == "sanity" or (stage == "validate" and "train" in self.tasks):
            self.progress.update(task, visible=False)  # as Lightning's: gone once the check or validation ends
        elif stage == "train":
            if self.last_train is not None and not self.leave:
                self.progress.update(self.last_train, visible=False)  # one training bar unless `leave`
            self.last_train = task
        self.progress.refresh()

    def finish(self) -> None:
        """End the live display (the stage is over); the bars left visible stay printed."""
        if self.progress is not None:
            self.progress.stop()
        self.progress, self.tasks, self.last_train = None, {}, None

    def write(self, stream: str, text: str) -> None:
        """Print ``text`` (lines from a Ray worker) above the live bars."""
        if self.progress is not None:
            self.progress.console.print(text.rstrip("\n"), markup=False, highlight=False)
        else:
            from rich.console import Console

            Console(stderr=stream == "stderr").print(text.rstrip("\n"), markup=False, highlight=False)


class RichProgressBar(ProgressBar):
    """Lightning's ``RichProgressBar``: the stages' progress (steps, elapsed and remaining time, speed, the
    metrics logged with ``prog_bar=True``) drawn by rich. Shown by global rank 0; under Ray, on the driver.
    ``console_kwargs`` go to ``rich.console.Console``."""

    def __init__(self, refresh_rate: int = 1, leave: bool = False, theme: RichProgressBarTheme | None = None,
                 console_kwargs: dict[str, Any] | None = None) -> None:  # fmt: skip
        require_rich("RichProgressBar")
        self.theme = theme or RichProgressBarTheme()
        super().__init__(refresh_rate=refresh_rate, renderer=RichRenderer(self.theme, console_kwargs, leave))
        self.leave = leave

"""Progress bars, at Lightning's import paths: ``ProgressBar`` (lightray's default: a tqdm bar on a terminal,
lines in logs), ``TQDMProgressBar``, ``RichProgressBar`` (the ``rich`` extra)."""

from lightray.callbacks.progress.progress_bar import LineRenderer, ProgressBar, Renderer, default_renderer
from lightray.callbacks.progress.rich_progress import RichProgressBar, RichProgressBarTheme
from lightray.callbacks.progress.tqdm_progress import TQDMProgressBar, TqdmRenderer

__all__ = [
    "LineRenderer",
    "ProgressBar",
    "Renderer",
    "RichProgressBar",
    "RichProgressBarTheme",
    "TQDMProgressBar",
    "TqdmRenderer",
    "default_renderer",
]

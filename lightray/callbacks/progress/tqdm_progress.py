"""Lightning's ``TQDMProgressBar``: the progress as tqdm bars, always (the default ``ProgressBar`` prints lines
when stderr is not a terminal)."""

from __future__ import annotations

import math
import sys
from typing import Any

from lightray.callbacks.progress.progress_bar import ProgressBar


class TqdmRenderer:
    """A tqdm bar per stage on the terminal; validation's bar sits below training's."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def start(self, stage: str, description: str, total: float) -> None:
        from tqdm.auto import tqdm

        self.close(stage)
        self.bars[stage] = tqdm(
            total=None if math.isinf(total) else int(total),
            desc=description,
            position=0 if stage == "train" else 1,
            leave=stage in ("train", "test", "predict", "validate"),
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def update(self, stage: str, n: int, metrics: dict[str, float]) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            return
        bar.n = n
        if metrics:
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)
        bar.refresh()

    def close(self, stage: str) -> None:
        bar = self.bars.pop(stage, None)
        if bar is not None:
            bar.close()

    def write(self, stream: str, text: str) -> None:
        """Print ``text`` (lines from a Ray worker) above the bars, which are drawn again below it."""
        from tqdm.auto import tqdm

        tqdm.write(text.rstrip("\n"), file=getattr(sys, stream))


class TQDMProgressBar(ProgressBar):
    """Lightning's tqdm bar: always tqdm (the default ``ProgressBar`` prints lines when stderr is not a terminal).

    ``refresh_rate`` batches between updates; ``process_position`` and ``leave`` are accepted for Lightning's
    signature (one bar per stage is shown, below the training one).
    """

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, renderer=TqdmRenderer())
        self.process_position, self.leave = process_position, leave

"""Lightning's ``RichModelSummary``: the model summary as a rich table. Needs ``rich`` (the ``rich`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightray.callbacks.model_summary import ModelSummary, summary_rows
from lightray.callbacks.progress.rich_progress import rich_missing

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


class RichModelSummary(ModelSummary):
    """Lightning's ``RichModelSummary``: the model summary as a rich table, printed when fit starts on global
    rank 0. ``summarize_kwargs``: ``header_style`` (default ``"bold magenta"``)."""

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        try:
            import rich  # noqa: F401
        except ImportError:
            raise rich_missing("RichModelSummary") from None
        super().__init__(max_depth)
        self.summarize_kwargs = summarize_kwargs

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.max_depth == 0 or not trainer.is_global_zero:
            return
        from rich import get_console
        from rich.table import Table

        header, rows, totals = summary_rows(pl_module, self.max_depth)
        table = Table(header_style=self.summarize_kwargs.get("header_style", "bold magenta"))
        for column in ("", *header):
            table.add_column(column, justify="right" if column == "Params" else "left")
        for index, row in enumerate(rows):
            table.add_row(str(index), *row)
        console = get_console()
        console.print(table)
        for label, value in totals:
            console.print(f"[bold]{label}[/]: {value}")

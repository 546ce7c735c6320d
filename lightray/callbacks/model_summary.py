"""ModelSummary: a table of the model's layers and parameter counts, printed when fit starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from lightray.callbacks.callback import Callback

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


def summary_rows(
    module: nn.Module, max_depth: int = 1
) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str]]]:
    """The rows (name, type, parameters, mode) of ``module``'s submodules down to ``max_depth`` levels, and the
    totals as (label, value)."""
    rows = []
    for name, child in module.named_modules():
        depth = name.count(".") + 1
        if not name or depth > max_depth:
            continue
        params = sum(p.numel() for p in child.parameters())
        rows.append((name, type(child).__name__, _human(params), "train" if child.training else "eval"))
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    size_mb = sum(p.numel() * p.element_size() for p in module.parameters()) / 1e6
    totals = [
        ("Trainable params", _human(trainable)),
        ("Non-trainable params", _human(total - trainable)),
        ("Total params", _human(total)),
        ("Total estimated model params size (MB)", f"{size_mb:.3f}"),
    ]
    return rows, totals


def summarize(module: nn.Module, max_depth: int = 1) -> str:
    """The summary table of ``module`` down to ``max_depth`` levels of submodules."""
    rows, totals = summary_rows(module, max_depth)
    header = ("", "Name", "Type", "Params", "Mode")
    table = [header] + [(str(i), *row) for i, row in enumerate(rows)]
    widths = [max(len(r[c]) for r in table) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    rule = "-" * max(len(line) for line in lines) if lines else ""
    return "\n".join([lines[0], rule, *lines[1:], rule] + [f"{value:<10}{label}" for label, value in totals])


def _human(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return str(n)


class ModelSummary(Callback):
    """Prints :func:`summarize` of the module at the start of fit, on global rank 0 only (on by default)."""

    def __init__(self, max_depth: int = 1) -> None:
        self.max_depth = max_depth

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.max_depth != 0 and trainer.is_global_zero:
            print(summarize(pl_module, self.max_depth))

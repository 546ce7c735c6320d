"""ModelSummary: a table of the model's layers and parameter counts, printed when fit starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lightray.callbacks.callback import Callback
from lightray.utilities.apply_func import move_data_to_device

if TYPE_CHECKING:
    from lightray.core.module import LightningModule
    from lightray.trainer import Trainer


def summary_rows(module: nn.Module, max_depth: int = 1) -> tuple[list[str], list[list[str]], list[tuple[str, str]]]:
    """The summary of ``module``'s submodules down to ``max_depth`` levels: the column names, one row per
    submodule (name, type, parameters, mode, and with an ``example_input_array`` the in and out sizes, as
    Lightning), and the totals as (label, value)."""
    children = [(name, child) for name, child in module.named_modules() if name and name.count(".") < max_depth]
    header = ["Name", "Type", "Params", "Mode"]
    rows = [
        [name, type(child).__name__, _human(sum(p.numel() for p in child.parameters())),
         "train" if child.training else "eval"]
        for name, child in children
    ]  # fmt: skip
    sizes = _in_and_out_sizes(module, [child for _, child in children])
    if sizes is not None:
        header += ["In sizes", "Out sizes"]
        rows = [[*row, *size] for row, size in zip(rows, sizes)]
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    size_mb = sum(p.numel() * p.element_size() for p in module.parameters()) / 1e6
    totals = [
        ("Trainable params", _human(trainable)),
        ("Non-trainable params", _human(total - trainable)),
        ("Total params", _human(total)),
        ("Total estimated model params size (MB)", f"{size_mb:.3f}"),
    ]
    return header, rows, totals


def _in_and_out_sizes(module: nn.Module, children: list[nn.Module]) -> list[tuple[str, str]] | None:
    """Each child's input and output shapes in one forward pass of the module's ``example_input_array`` (eval
    mode, no gradients, the modes put back after); None without an example."""
    example = getattr(module, "example_input_array", None)
    if example is None:
        return None
    sizes = {id(child): ("?", "?") for child in children}

    def record(child: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        inputs = (*args, *kwargs.values())
        sizes[id(child)] = (str(_shape(inputs[0] if len(inputs) == 1 else inputs)), str(_shape(output)))

    handles = [child.register_forward_hook(record, with_kwargs=True) for child in children]
    modes = {m: m.training for m in module.modules()}
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    example = move_data_to_device(example, device)
    try:
        module.eval()
        with torch.no_grad():
            if isinstance(example, list | tuple):
                module(*example)
            elif isinstance(example, dict):
                module(**example)
            else:
                module(example)
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.train(training)
    return [sizes[id(child)] for child in children]


def _shape(value: Any) -> Any:
    """Lightning's way of writing a batch's shape: a list of sizes, nested for sequences, "?" otherwise."""
    if hasattr(value, "shape"):
        return list(value.shape)
    if isinstance(value, list | tuple):
        return [_shape(item) for item in value]
    return "?"


def summarize(module: nn.Module, max_depth: int = 1) -> str:
    """The summary table of ``module`` down to ``max_depth`` levels of submodules."""
    header, rows, totals = summary_rows(module, max_depth)
    table = [["", *header]] + [[str(i), *row] for i, row in enumerate(rows)]
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
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

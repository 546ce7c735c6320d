"""Learning curves from a run's ``metrics.csv`` (CSVLogger's file) as a PNG, with matplotlib (the ``viz`` extra).

One panel per quantity, training and validation of it on the same axes: ``train_loss``, ``val_loss`` and
``loss_epoch`` share the panel ``loss``; the x axis is the optimizer step. Runs anywhere (the driver, usually).
"""

from __future__ import annotations

import csv
import os
import re

from lightray.errors import MisconfigurationError

_SPLIT = re.compile(r"^(?P<split>train|training|val|valid|validation|test)[_/]")
_SUFFIX = re.compile(r"(_step|_epoch|/dataloader_idx_\d+)+$")


def find_metrics_file(path: str) -> str:
    """``path`` itself when it is a file; else ``metrics.csv`` in the folder, or in its newest ``version_N``."""
    if os.path.isfile(path):
        return path
    direct = os.path.join(path, "metrics.csv")
    if os.path.isfile(direct):
        return direct
    found = []
    for folder, _, files in os.walk(path):
        if "metrics.csv" in files:
            found.append(os.path.join(folder, "metrics.csv"))
    if not found:
        raise MisconfigurationError(
            f"No metrics.csv in {path} or below it. It is CSVLogger's file (the default logger), written into "
            "<default_root_dir>/lightning_logs/version_N/; give that folder, the run's root, or the file."
        )
    return max(found, key=os.path.getmtime)


def read_metrics(path: str) -> dict[str, list[tuple[float, float]]]:
    """Each metric's ``(step, value)`` points, in file order (rows without the metric are skipped)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        step = row.get("step") or ""
        for name, value in row.items():
            if name in ("step", "epoch") or value in ("", None) or not step:
                continue
            try:
                series.setdefault(name, []).append((float(step), float(value)))
            except ValueError:  # a column that is not a number
                continue
    return series


def panel_of(name: str) -> str:
    """The quantity a metric measures: ``val_loss_epoch`` -> ``loss``."""
    base = _SUFFIX.sub("", _SPLIT.sub("", name))
    return base or name


def plot_metrics(path: str, out: str | None = None) -> tuple[str, list[str]]:
    """Draw the learning curves of ``path`` (a run folder or a metrics.csv) into ``out`` (default: ``curves.png``
    beside the metrics file). Returns the PNG's path and the panels' names."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MisconfigurationError(
            "Plotting learning curves needs matplotlib: pip install 'lightray[viz]' (or matplotlib)."
        ) from None
    metrics_file = find_metrics_file(path)
    series = read_metrics(metrics_file)
    if not series:
        raise MisconfigurationError(f"{metrics_file} holds no metric values yet: nothing to plot.")
    panels: dict[str, list[str]] = {}
    for name in sorted(series, key=lambda n: "loss" not in n):  # the loss first, then the file's order
        panels.setdefault(panel_of(name), []).append(name)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3 * len(panels)), squeeze=False, sharex=True)
    for ax, (panel, names) in zip(axes[:, 0], panels.items()):
        for name in names:
            steps, values = zip(*series[name])
            dense = len(steps) > 20  # per-step values: a line; per-epoch values: a line with markers
            ax.plot(steps, values, label=name, marker=None if dense else "o", linewidth=1 if dense else 1.5)
        ax.set_title(panel)
        ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    out = out or os.path.join(os.path.dirname(metrics_file), "curves.png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out, list(panels)

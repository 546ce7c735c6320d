"""Learning curves of a run as a PNG, with matplotlib (the ``viz`` extra): from ``metrics.csv`` (CSVLogger's file)
or from TensorBoard event files (TensorBoardLogger's, read with the ``tensorboard`` package of the same extra).

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


def _is_metrics_file(name: str) -> bool:
    return name == "metrics.csv" or name.startswith("events.out.tfevents.")


def find_metrics_file(path: str) -> str:
    """``path`` itself when it is a file; else the newest ``metrics.csv`` or TensorBoard event file in the folder
    or below it (its newest ``version_N``)."""
    if os.path.isfile(path):
        return path
    found = [
        os.path.join(folder, name) for folder, _, files in os.walk(path) for name in files if _is_metrics_file(name)
    ]
    if not found:
        raise MisconfigurationError(
            f"No metrics.csv or TensorBoard event file in {path} or below it. The default logger writes them into "
            "<default_root_dir>/lightning_logs/version_N/; give that folder, the run's root, or the file."
        )
    return max(found, key=os.path.getmtime)


def read_metrics(path: str) -> dict[str, list[tuple[float, float]]]:
    """Each metric's ``(step, value)`` points, in the order they were logged."""
    if os.path.basename(path).startswith("events.out.tfevents."):
        return _read_events(path)
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


def _read_events(path: str) -> dict[str, list[tuple[float, float]]]:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise MisconfigurationError(
            f"Reading TensorBoard event files ({path}) needs the tensorboard package: pip install 'lightray[viz]'."
        ) from None
    events = EventAccumulator(path, size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {
        tag: [(float(e.step), float(e.value)) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag not in ("epoch", "hp_metric")  # the step's epoch, and TensorBoard's placeholder for hparams
    }


def panel_of(name: str) -> str:
    """The quantity a metric measures: ``val_loss_epoch`` -> ``loss``."""
    base = _SUFFIX.sub("", _SPLIT.sub("", name))
    return base or name


def plot_metrics(path: str, out: str | None = None) -> tuple[str, list[str]]:
    """Draw the learning curves of ``path`` (a run folder, a metrics.csv or an event file) into ``out`` (default:
    ``curves.png`` beside the metrics file). Returns the PNG's path and the panels' names."""
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

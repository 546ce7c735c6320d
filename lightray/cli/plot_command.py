"""``lightray plot <run folder>``: a PNG of the run's learning curves from its ``metrics.csv`` or TensorBoard event
files (driver)."""

from __future__ import annotations

import argparse

from lightray.loggers.plot import plot_metrics


def plot_main(argv: list[str]) -> int:
    """Parse ``argv``, draw the curves, say where the PNG went. Bad input raises MisconfigurationError (exit 2)."""
    parser = argparse.ArgumentParser(
        prog="lightray plot",
        description="Draw a run's learning curves (from metrics.csv or TensorBoard event files) as a PNG: one panel "
        "per quantity, training and validation on the same axes. Needs matplotlib (pip install 'lightray[viz]').",
    )
    parser.add_argument(
        "path", help="a run folder (lightning_logs/version_N, or a root above it), a metrics.csv or an event file"
    )
    parser.add_argument(
        "-o", "--out", default=None, help="the PNG to write (default: curves.png beside the metrics file)"
    )
    args = parser.parse_args(argv)
    out, panels = plot_metrics(args.path, args.out)
    print(f"wrote {out} ({len(panels)} panel{'s' * (len(panels) != 1)}: {', '.join(panels)})")
    return 0

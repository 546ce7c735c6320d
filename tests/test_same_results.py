"""Same results as Lightning on real programs: each program in ``lightning_programs`` runs on lightray and
on pytorch-lightning, and everything it returns must agree.

Compared per program: global_step and current_epoch, the loss of every training step (atol 1e-5), the
final weights (atol 1e-5), ``trainer.callback_metrics`` after each stage (same keys, values within 1e-5),
the best checkpoint's file name, the test/validate results, and every program-specific value (logged
CSV files, checkpoint contents, module modes, learning rates, early-stopping state, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning_programs import PROGRAMS

import lightray

pl = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")

ATOL = 1e-5

# compared first, in this order, so a failure names the most telling difference; then everything else
ORDER = ["global_step", "current_epoch", "losses", "weights", "metrics", "best_checkpoint", "test_results"]


def _first_loss_difference(ours: list[Any], theirs: list[Any]) -> str | None:
    for step, (a, b) in enumerate(zip(ours, theirs)):
        a_values = a if isinstance(a, dict) else {"loss": a}
        b_values = b if isinstance(b, dict) else {"loss": b}
        if a_values.keys() != b_values.keys():
            return f"step {step}: lightray logged {sorted(a_values)}, Lightning {sorted(b_values)}"
        for key in b_values:
            if abs(a_values[key] - b_values[key]) > ATOL:
                return f"step {step} {key}: lightray {a_values[key]!r}, Lightning {b_values[key]!r}"
    if len(ours) != len(theirs):
        return f"lightray ran {len(ours)} training steps, Lightning {len(theirs)}"
    return None


def assert_same(ours: Any, theirs: Any, where: str) -> None:
    """``ours`` (lightray) equals ``theirs`` (Lightning): floats and tensors within ATOL, the rest exactly."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{where}: lightray gave {type(ours).__name__}, Lightning a dict"
        missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        assert not missing and not extra, f"{where}: keys missing in lightray {missing}, only in lightray {extra}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, list | tuple):
        assert isinstance(ours, list | tuple), f"{where}: lightray gave {ours!r}, Lightning {theirs!r}"
        assert len(ours) == len(theirs), f"{where}: lightray has {len(ours)} items, Lightning {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor), f"{where}: lightray gave {ours!r}, Lightning a tensor"
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0, msg=lambda m: f"{where}: {m}")
    elif isinstance(theirs, float) and not isinstance(ours, bool):
        assert isinstance(ours, int | float), f"{where}: lightray gave {ours!r}, Lightning {theirs!r}"
        assert ours == pytest.approx(theirs, abs=ATOL, nan_ok=True), f"{where}: lightray {ours!r}, Lightning {theirs!r}"
    else:
        assert ours == theirs, f"{where}: lightray {ours!r}, Lightning {theirs!r}"


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_same_results_as_lightning(program: str, tmp_path: Path) -> None:
    theirs = PROGRAMS[program](pl, tmp_path / "lightning")
    ours = PROGRAMS[program](lightray, tmp_path / "lightray")

    assert len(theirs["losses"]) > 0
    assert ours.keys() == theirs.keys()
    assert ours["global_step"] == theirs["global_step"], "global_step"
    assert ours["current_epoch"] == theirs["current_epoch"], "current_epoch"
    difference = _first_loss_difference(ours["losses"], theirs["losses"])
    assert difference is None, f"training losses differ first at {difference}"
    for key in ORDER + sorted(set(theirs) - set(ORDER)):
        if key in theirs:
            assert_same(ours[key], theirs[key], key)

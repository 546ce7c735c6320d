"""Same results as Lightning on real programs: each program in ``lightning_programs`` runs on lightray and
on pytorch-lightning, and everything it returns must agree.

Compared per program: global_step and current_epoch, the loss of every training step (atol 1e-5), the
final weights (atol 1e-5), ``trainer.callback_metrics`` after each stage (same keys, values within 1e-5),
the best checkpoint's file name, the test/validate results, and every program-specific value (logged
CSV files, checkpoint contents, module modes, learning rates, early-stopping state, ...). A failure lists
every difference found, the most telling first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning_example_programs import EXAMPLE_PROGRAMS
from lightning_programs import PROGRAMS

import lightray

pl = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")

ATOL = 1e-5

# compared first, in this order, so the list of differences starts with the most telling; then the rest
ORDER = ["global_step", "current_epoch", "losses", "weights", "metrics", "best_checkpoint", "test_results"]


def first_loss_difference(ours: list[Any], theirs: list[Any]) -> str | None:
    """Where the per-step training losses first differ (a step's losses may be a dict, e.g. g/d losses)."""
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


def differences(ours: Any, theirs: Any, where: str, found: list[str]) -> list[str]:
    """Append to ``found`` where ``ours`` (lightray) differs from ``theirs`` (Lightning).

    Floats and tensors must agree within ATOL, everything else exactly; dicts need the same keys.
    """
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            found.append(f"{where}: lightray gave {ours!r}, Lightning a dict")
            return found
        missing, extra = sorted(set(theirs) - set(ours), key=str), sorted(set(ours) - set(theirs), key=str)
        if missing or extra:
            found.append(f"{where}: keys missing in lightray {missing}, only in lightray {extra}")
        for key in theirs:
            if key in ours:
                differences(ours[key], theirs[key], f"{where}[{key!r}]", found)
    elif isinstance(theirs, list | tuple):
        if not isinstance(ours, list | tuple):
            found.append(f"{where}: lightray gave {ours!r}, Lightning {theirs!r}")
            return found
        if len(ours) != len(theirs):
            found.append(f"{where}: lightray has {len(ours)} items, Lightning {len(theirs)}")
        for i, (a, b) in enumerate(zip(ours, theirs)):
            differences(a, b, f"{where}[{i}]", found)
    elif isinstance(theirs, torch.Tensor):
        if not isinstance(ours, torch.Tensor) or ours.shape != theirs.shape or ours.dtype != theirs.dtype:
            found.append(f"{where}: lightray gave {ours!r}, Lightning {theirs!r}")
        elif theirs.numel() and not torch.allclose(ours, theirs, atol=ATOL, rtol=0, equal_nan=True):
            worst = (ours.double() - theirs.double()).abs().max().item()
            found.append(f"{where}: tensors differ, max abs difference {worst:.3g}")
    elif isinstance(theirs, float) and isinstance(ours, int | float) and not isinstance(ours, bool):
        if ours != pytest.approx(theirs, abs=ATOL, nan_ok=True):
            found.append(f"{where}: lightray {ours!r}, Lightning {theirs!r}")
    elif ours != theirs or type(ours) is not type(theirs):
        found.append(f"{where}: lightray {ours!r}, Lightning {theirs!r}")
    return found


ALL_PROGRAMS = {**PROGRAMS, **EXAMPLE_PROGRAMS}


@pytest.mark.parametrize("program", list(ALL_PROGRAMS))
def test_same_results_as_lightning(program: str, tmp_path: Path) -> None:
    theirs = ALL_PROGRAMS[program](pl, tmp_path / "lightning")
    ours = ALL_PROGRAMS[program](lightray, tmp_path / "lightray")
    assert len(theirs["losses"]) > 0

    found: list[str] = []
    loss_difference = first_loss_difference(ours["losses"], theirs["losses"])
    if loss_difference:
        found.append(f"training losses differ first at {loss_difference}")
    for key in [k for k in ORDER if k in theirs] + sorted(set(theirs) - set(ORDER)):
        if key not in ours:
            found.append(f"{key}: lightray's run returned none")
        else:
            differences(ours[key], theirs[key], key, found)
    assert not found, f"{len(found)} difference(s) from Lightning:\n" + "\n".join(found[:40])

"""Every example runs, with small limits (the digits demo also in full: it is the README's main job)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))


def test_digits_fast_dev_run(tmp_path):
    import digits

    metrics = digits.main(["--fast-dev-run", "--default-root-dir", str(tmp_path)])
    assert "val_acc" in metrics and "train_loss" in metrics


@pytest.mark.slow
def test_digits_demo_reaches_95_percent_within_a_minute(tmp_path):
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "digits.py"), "--default-root-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    accuracy = float(out.stdout.strip().splitlines()[-1].split(":")[1])
    assert accuracy >= 0.95, out.stdout
    assert elapsed < 60, f"took {elapsed:.0f} s"

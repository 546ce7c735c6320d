import os
import sys

import pytest

# tests import their helpers (recording.py) as top-level modules
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def quiet(tmp_path):
    """Trainer kwargs that keep a test's output and files small (and inside tmp_path)."""
    return dict(
        default_root_dir=str(tmp_path),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )

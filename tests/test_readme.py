"""README.md cannot rot: every code block runs as written, or is listed here with why a test machine cannot run it.

Each block runs in a fresh folder that holds the repository's ``examples/`` (as its root does), joined to this
module's Ray cluster through ``RAY_ADDRESS``: Python blocks as scripts, shell blocks line by line with bash.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

# A block whose first line starts with one of these does not run here; the reason says what checks it instead.
NOT_RUN = {
    "python3 -m venv .venv": "the set-up command: .ci/run runs it from README.md on a clean clone",
    ".venv/bin/ruff check": "the test command itself: .ci/run runs it",
    "ray up cluster/": "needs a cloud account (tests/test_cluster_configs.py checks the configs)",
    "kubectl apply": "needs Kubernetes with KubeRay (tests/test_cluster_configs.py checks the manifests)",
    "lightray submit": "needs a remote cluster (tests/test_ray_jobs.py submits to a local head)",
}


def readme_blocks() -> list[tuple[str, str, str]]:
    """(section heading, language, code) of every fenced block of README.md, in order."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    blocks, heading = [], ""
    for match in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL):
        if match.group(1):
            heading = match.group(1).lstrip("# ")
        else:
            blocks.append((heading, match.group(2), match.group(3)))
    return blocks


BLOCKS = readme_blocks()
RUN = [b for b in BLOCKS if not any(b[2].startswith(prefix) for prefix in NOT_RUN)]


@pytest.fixture(scope="module")
def cluster_address():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_every_block_is_run_or_says_why_not():
    assert {lang for _, lang, _ in BLOCKS} == {"python", "bash"}
    skipped = [code.splitlines()[0] for _, _, code in BLOCKS if code not in [c for _, _, c in RUN]]
    assert len(skipped) == len(NOT_RUN), skipped  # each reason is used once: none is stale
    assert len(RUN) >= 6


@pytest.mark.parametrize("heading,language,code", RUN, ids=[f"{i}-{b[0][:24]}" for i, b in enumerate(RUN)])
def test_block_runs_as_written(heading, language, code, tmp_path, cluster_address):
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    env = {**os.environ, "RAY_ADDRESS": cluster_address, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    if language == "python":
        script = tmp_path / "snippet.py"
        script.write_text(code)
        commands = [[sys.executable, str(script)]]
    else:  # one command per line; a trailing backslash continues it
        lines = [line for line in code.replace("\\\n", " ").splitlines() if line.strip()]
        commands = [["bash", "-c", line] for line in lines]
    for command in commands:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{heading}: {command[-1]}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"

"""`ray job submit` against a real head on loopback: `lightray fit`, the CIFAR-10 example, stop and resume.

The head gets its own RAY_TMPDIR, free ports and auth token, so it never meets the other Ray clusters
of the test session or of this machine; teardown ends exactly the processes it started (`ray stop` would
end every Ray process on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("ray.dashboard", reason="ray job submit needs ray[default]")
psutil = pytest.importorskip("psutil", reason="ray[default] brings psutil")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Head:
    """A `ray start --head --block` process and the environment its clients need (address, auth token)."""

    def __init__(self):
        self.tmpdir = tempfile.mkdtemp(prefix="/tmp/lrj")  # short: Ray's unix socket paths must stay short
        gcs, dashboard, client, agent = free_ports(4)
        self.address = f"http://127.0.0.1:{dashboard}"
        self.env = {
            **os.environ,
            "RAY_TMPDIR": self.tmpdir,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),  # this cluster's own token; job clients send it
            "PATH": BIN + os.pathsep + os.environ["PATH"],  # the job runs `lightray` / `python` of this venv
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
        }
        self.env.pop("RAY_ADDRESS", None)
        command = [
            os.path.join(BIN, "ray"),
            "start",
            "--head",
            "--block",
            "--port",
            str(gcs),
            "--num-cpus",
            "2",
            "--node-ip-address",
            "127.0.0.1",
            "--include-dashboard",
            "true",
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dashboard),
            "--ray-client-server-port",
            str(client),
            "--dashboard-agent-listen-port",
            str(agent),
            "--disable-usage-stats",
        ]
        self.log = os.path.join(self.tmpdir, "head.log")
        with open(self.log, "w") as log:  # the head keeps its own copy of the file handle
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not self._dashboard_up():
            assert self.process.poll() is None, Path(self.log).read_text()
            assert time.time() < deadline, "the Ray head did not start in 60 s:\n" + Path(self.log).read_text()
            time.sleep(0.5)

    def _dashboard_up(self):
        try:
            urllib.request.urlopen(self.address + "/api/version", timeout=2)
        except urllib.error.HTTPError:
            return True  # answering (401 without the token): up
        except OSError:
            return False
        return True

    def ray(self, *args, env=None, timeout=180, check=True):
        """`ray job <args> --address <head>`; returns the finished process (output in .stdout)."""
        command = [os.path.join(BIN, "ray"), "job", args[0], "--address", self.address, *args[1:]]
        done = subprocess.run(command, env=env or self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def client(self, token=None):
        """Ray's JobSubmissionClient for this head; it sends the cluster's token as a bearer token."""
        from ray.job_submission import JobSubmissionClient

        token = token or self.env["RAY_AUTH_TOKEN"]
        return JobSubmissionClient(self.address, headers={"Authorization": f"Bearer {token}"})

    def status(self, job_id):
        return str(self.client().get_job_status(job_id).value)

    def stop(self):
        """End the head and every process under it (ray start, GCS, raylet, dashboard, workers, job drivers)."""
        try:
            head = psutil.Process(self.process.pid)
            processes = [head, *head.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(processes, timeout=5)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


@pytest.fixture(scope="module")
def head():
    started = Head()
    yield started
    started.stop()


@pytest.fixture
def job_dir(tmp_path):
    """A small working_dir for the job: the module file it names by class path, and nothing else."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(os.path.join(REPO, "tests", "cli_models.py"), folder)
    return folder


def global_step(path):
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def test_job_client_needs_the_clusters_token(head):
    with pytest.raises(Exception, match="(?i)token"):
        head.client(token=secrets.token_hex(32)).list_jobs()
    assert head.client().list_jobs() == []


def test_cifar10_example_as_a_job(head, tmp_path):
    root = tmp_path / "cifar"
    done = head.ray(
        "submit",
        "--working-dir",
        REPO,
        "--",
        "python",
        "examples/cifar10.py",
        "--synthetic",
        "--num-workers",
        "2",
        "--size",
        "32",
        "--batch-size",
        "16",
        "--max-epochs",
        "1",
        "--default-root-dir",
        str(root),
    )
    assert "train_loss: " in done.stdout
    job_id = re.search(r"Job '(raysubmit_\w+)' succeeded", done.stdout).group(1)
    assert head.status(job_id) == "SUCCEEDED"
    (run,) = os.listdir(root / "ray_results")
    checkpoints = [name for name in os.listdir(root / "ray_results" / run) if name.endswith(".ckpt")]
    assert checkpoints == ["epoch=0-step=1.ckpt"]  # 32 images / (16 per batch x 2 workers)
    assert global_step(root / "ray_results" / run / checkpoints[0] / "checkpoint.ckpt") == 1


def test_stopped_job_resubmitted_resumes_from_its_last_checkpoint(head, job_dir, tmp_path):
    runs, root = tmp_path / "runs", tmp_path / "root"
    run_dir = runs / "resume"
    # 3 epochs x 4 steps of 1 s each, a checkpoint every 2 steps: long enough to stop in the middle
    fit = [
        "lightray",
        "fit",
        "--model",
        "cli_models.TinyModel",
        "--model.step_sleep",
        "1",
        "--data",
        "cli_models.TinyData",
        "--data.n",
        "64",
        "--trainer.max_epochs",
        "3",
        "--trainer.num_workers",
        "2",
        "--trainer.name",
        "resume",
        "--trainer.storage_path",
        str(runs),
        "--trainer.default_root_dir",
        str(root),
        "--seed_everything",
        "1",
        "--trainer.callbacks+=lightray.callbacks.ModelCheckpoint",
        "--trainer.callbacks.every_n_train_steps",
        "2",
        "--trainer.callbacks.save_top_k",
        "-1",
        *QUIET,
    ]
    submit = [os.path.join(BIN, "lightray"), "submit", "--address", head.address, "--working-dir", str(job_dir)]

    first = subprocess.run([*submit, "--no-wait", "--", *fit], env=head.env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    assert re.search(r"uploading working_dir .*project: 1 files, \d+\.\d KiB", first.stderr)  # the guard spoke first
    job_id = re.search(r"raysubmit_\w+", first.stdout).group(0)
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    deadline = time.time() + 90
    while not (snapshot.exists() and json.loads(snapshot.read_text())["checkpoint_results"]):
        assert time.time() < deadline, head.client().get_job_logs(job_id)
        assert head.status(job_id) in ("PENDING", "RUNNING"), head.client().get_job_logs(job_id)
        time.sleep(0.5)
    head.ray("stop", job_id)  # waits until the job has stopped
    assert head.status(job_id) == "STOPPED"
    registered = [result["checkpoint_dir_name"] for result in json.loads(snapshot.read_text())["checkpoint_results"]]
    assert "epoch=2-step=12.ckpt" not in registered  # it really stopped before the end
    latest = max(global_step(run_dir / name / "checkpoint.ckpt") for name in registered)

    second = subprocess.run([*submit, "--", *fit], env=head.env, capture_output=True, text=True, timeout=150)
    assert second.returncode == 0, second.stdout + second.stderr
    starts = [int(step) for step in re.findall(r"train starts at global_step=(\d+)", second.stdout)]
    assert starts == [latest] and latest >= 2  # resumed from the last registered checkpoint, not from step 0
    final = json.loads(snapshot.read_text())["latest_checkpoint_result"]
    assert final["checkpoint_dir_name"] == "epoch=2-step=12.ckpt"
    assert final["metrics"]["step"] == 12 and final["metrics"]["val_loss"] > 0
    assert global_step(run_dir / "epoch=2-step=12.ckpt" / "checkpoint.ckpt") == 12
    saved = (run_dir / "config.yaml").read_text()  # the resolved config sits beside the checkpoints
    assert "name: resume" in saved and "step_sleep: 1.0" in saved

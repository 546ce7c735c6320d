"""What a person sees: the local terminal, the lines a finished stage prints, worker output capture."""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

import lightray as pl
from lightray.ray_backend.output import WorkerOutput
from lightray.testing import BoringModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def screen_of(command: str, tmp_path, env: dict[str, str] | None = None) -> list[str]:
    """The lines a 160-column terminal shows for ``command`` (``script``), split where the terminal starts a line
    again (newline or carriage return), escape sequences removed."""
    if shutil.which("script") is None:
        pytest.skip("needs util-linux `script` for a pseudo-terminal")
    capture = tmp_path / "screen.txt"
    subprocess.run(["script", "-qec", f"stty cols 160 rows 50; {command}", str(capture)], timeout=240, check=True,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", capture.read_text(errors="replace"))
    lines = [piece.strip() for piece in re.split(r"[\r\n]+", text)]
    return [piece for piece in lines if piece and not piece.startswith("Script ")]


def test_the_local_digits_demo_in_a_terminal(tmp_path):
    program = os.path.join(ROOT, "examples", "digits.py")
    command = f"{shlex.quote(sys.executable)} {program} --max-epochs 2 --default-root-dir {tmp_path}"
    screen = screen_of(command, tmp_path)
    assert screen[0].startswith("Name  Type")  # the model summary first
    assert len({line.split("|")[1].strip() for line in screen if line.startswith("Epoch 0:") and "|" in line}) >= 3
    assert "`Trainer.fit` stopped: `max_epochs=2` reached." in screen
    summary = screen[screen.index("`Trainer.fit` stopped: `max_epochs=2` reached.") + 1 :]
    assert summary[0].startswith("lightray: fit finished at epoch 2, step 46 in")
    # TensorBoard's event file: the default logger when tensorboard is installed (the dev extra), as in Lightning
    events = r"events\.out\.tfevents\.[\w.]+"
    assert re.fullmatch(rf"logs {{9}}{tmp_path}/lightning_logs/version_0 \(checkpoints, {events}, hparams\.yaml\)",
                        summary[1]), summary[1]  # fmt: skip
    assert summary[2] == f"checkpoint   {tmp_path}/lightning_logs/version_0/checkpoints/epoch=1-step=46.ckpt"
    assert screen[-1].startswith("validation accuracy: ")
    assert not [line for line in screen if "Warning" in line]  # a clean run warns about nothing


def fit_quietly(tmp_path, caplog, **kwargs):
    data = DataLoader(torch.randn(8, 32), batch_size=2)
    trainer = pl.Trainer(default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False, **kwargs)
    with caplog.at_level(logging.INFO, logger="lightray"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(BoringModel(), data, data)
    return trainer, [r.getMessage() for r in caplog.records if r.name.startswith("lightray")]


def test_a_finished_fit_says_where_its_results_went(tmp_path, caplog):
    checkpoint = pl.callbacks.ModelCheckpoint(monitor="val_loss", save_last=True)
    trainer, messages = fit_quietly(tmp_path, caplog, max_epochs=2, log_every_n_steps=1, callbacks=[checkpoint])
    assert messages[0] == "`Trainer.fit` stopped: `max_epochs=2` reached."
    lines = messages[1].splitlines()
    assert lines[0].startswith("lightray: fit finished at epoch 2, step 8 in ")
    assert re.fullmatch(rf"  logs {{9}}{trainer.log_dir} \(checkpoints, events\.out\.tfevents\.[\w.]+\)", lines[1])
    score = float(checkpoint.best_model_score)
    assert lines[2] == f"  best         {checkpoint.best_model_path} (val_loss={score:.4g})"
    assert lines[3] == f"  last         {checkpoint.last_model_path}" and len(lines) == 4


def test_a_run_too_short_to_log_says_so(tmp_path, caplog):
    trainer, messages = fit_quietly(tmp_path, caplog, max_steps=3, logger=pl.loggers.CSVLogger(tmp_path),
                                    enable_checkpointing=False, limit_val_batches=0)  # fmt: skip
    assert not os.path.exists(os.path.join(trainer.log_dir, "metrics.csv"))
    assert (
        f"  logs         {trainer.log_dir} (nothing logged yet: training logs every log_every_n_steps=50 steps and "
        "this run made 3)" in messages[-1].splitlines()
    )


def test_test_and_validate_say_where_their_logs_went(tmp_path, caplog):
    data = DataLoader(torch.randn(4, 32), batch_size=2)
    trainer = pl.Trainer(default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False)
    with caplog.at_level(logging.INFO, logger="lightray"):
        trainer.test(BoringModel(), data, verbose=False)
    summary = caplog.records[-1].getMessage().splitlines()
    assert summary[0].startswith("lightray: test finished in ") and summary[1].startswith("  logs ")


class Channel:
    """Stands for the driver channel: records what the worker output sends."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.progress = self

    def remote(self, events: list[tuple]) -> None:
        self.events.extend(events)


def test_worker_output_goes_to_its_file_and_in_order_to_the_driver(tmp_path):
    # run in a child process: the capture redirects file descriptors 1 and 2, which pytest's own capture holds here
    code = f"""
import os, sys, warnings
from test_display import Channel
from lightray.ray_backend.output import WorkerOutput
channel = Channel()
with WorkerOutput({str(tmp_path)!r}, 0, channel) as output:
    print("a print"); sys.stdout.write("half a line")
    output.sync(); channel.events.append(("progress",))
    warnings.warn("a warning"); os.write(2, b"from C code\\n"); print("no newline", end="")
print(channel.events)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=os.path.dirname(__file__))  # fmt: skip
    events = eval(done.stdout)  # noqa: S307 - our own repr of tuples of str
    mark = events.index(("progress",))  # what was printed before the sync arrives before the event after it
    assert "".join(event[2] for event in events[:mark]) == "a print\nhalf a line\n"
    stderr = "".join(event[2] for event in events[mark:] if event[:2] == ("print", "stderr"))
    assert "UserWarning: a warning" in stderr and "from C code\n" in stderr
    # stdout and stderr are two pipes: between syncs, their lines may interleave either way
    assert ("print", "stdout", "no newline\n") in events[mark:] and done.stderr == ""
    log = (tmp_path / "rank_0.log").read_text()
    assert log.startswith("--- ") and "a print\nhalf a line\n" in log and "from C code" in log


def test_worker_output_without_a_folder_keeps_rays_worker_log():
    output = WorkerOutput(None, 1)
    assert output.path is None and output.channel is None


class Curves(BoringModel):
    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train_loss", loss)
        self.log("train_acc", torch.sigmoid(-loss))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("val_loss", loss)
        self.log("val_acc", torch.sigmoid(-loss))


@pytest.mark.parametrize("logger", ["default", "csv"])
def test_lightray_plot_draws_the_learning_curves(logger, tmp_path):
    from PIL import Image

    chosen = pl.loggers.CSVLogger(tmp_path) if logger == "csv" else True  # default: TensorBoard's event files
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=3, log_every_n_steps=4, enable_progress_bar=False,
                         enable_model_summary=False, logger=chosen)  # fmt: skip
    trainer.fit(Curves())
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "lightray"), "plot", str(tmp_path)],
                          capture_output=True, text=True)  # fmt: skip
    png = os.path.join(trainer.log_dir, "curves.png")
    assert done.returncode == 0 and done.stdout.strip() == f"wrote {png} (2 panels: loss, acc)", done.stderr
    with Image.open(png) as image:
        image.verify()  # a complete, valid PNG
        assert image.format == "PNG" and image.size == (800, 600)
    assert os.path.getsize(png) > 20_000  # curves drawn, not an empty canvas

    from lightray.loggers.plot import find_metrics_file, read_metrics

    metrics_file = find_metrics_file(trainer.log_dir)
    assert os.path.basename(metrics_file).startswith("metrics.csv" if logger == "csv" else "events.out.tfevents.")
    series = read_metrics(metrics_file)
    assert [step for step, _ in series["val_loss"]] == [31.0, 63.0, 95.0]  # validation at each epoch's last step
    assert len(series["train_loss"]) == 24  # every 4th of 96 steps


def test_lightray_plot_without_metrics_says_what_it_needs(tmp_path):
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "lightray"), "plot", str(tmp_path)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and "No metrics.csv or TensorBoard event file in" in done.stderr
    assert "lightning_logs/version_N/; give that folder" in done.stderr

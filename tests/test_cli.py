"""The `lightray` command: class paths, YAML and overrides, the saved config, bad input, the upload guard."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

import lightray
from lightray import cli, jobs
from lightray.errors import MisconfigurationError

TESTS = os.path.dirname(__file__)
LIGHTRAY = os.path.join(os.path.dirname(sys.executable), "lightray")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def write_config(tmp_path, **trainer):
    config = {
        "trainer": {"max_epochs": 3, "default_root_dir": str(tmp_path), **trainer},
        "model": {"class_path": "cli_models.TinyModel", "init_args": {"hidden": 4}},
        "data": {"class_path": "cli_models.TinyData"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_fit_from_yaml_with_overrides_saves_the_resolved_config(tmp_path, capsys):
    argv = ["fit", "--config", write_config(tmp_path), "--trainer.max_epochs", "2", "--model.lr", "0.05", *QUIET]
    assert cli.run([*argv, "--print-config"]) is None
    printed = capsys.readouterr().out
    resolved = yaml.safe_load(printed)
    assert resolved["trainer"]["max_epochs"] == 2  # the option wins over the file
    assert resolved["model"] == {
        "class_path": "cli_models.TinyModel",
        "init_args": {"lr": 0.05, "hidden": 4, "step_sleep": 0.0},
    }
    assert isinstance(resolved["seed_everything"], int)  # a random seed, written down so the run can be repeated
    assert not (tmp_path / "lightning_logs").exists()  # --print-config runs nothing

    cli.run([*argv, "--seed_everything", "7"])
    run_dir = tmp_path / "lightning_logs" / "version_0"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved == {**resolved, "seed_everything": 7}
    (ckpt,) = os.listdir(run_dir / "checkpoints")
    assert ckpt == "epoch=1-step=8.ckpt"  # 2 epochs of 32 samples in batches of 8
    checkpoint = torch.load(run_dir / "checkpoints" / ckpt, weights_only=True)
    assert checkpoint["hyper_parameters"] == {"lr": 0.05, "hidden": 4, "step_sleep": 0.0}

    # the saved config is a complete command: it evaluates the trained weights
    results = cli.run(
        ["test", "--config", str(run_dir / "config.yaml"), "--ckpt_path", str(run_dir / "checkpoints" / ckpt)]
    )
    assert set(results[0]) == {"test_loss"} and results[0]["test_loss"] > 0


@pytest.mark.parametrize("lr_option", ["--model.lr", "--model.init_args.lr"])
def test_init_args_both_spellings_and_callbacks(tmp_path, capsys, lr_option):
    argv = [
        "fit",
        "--model",
        "cli_models.TinyModel",
        lr_option,
        "0.5",
        "--trainer.callbacks+=lightray.callbacks.EarlyStopping",
        "--trainer.callbacks.monitor",
        "val_loss",
        "--print-config",
    ]
    cli.run(argv)
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["init_args"]["lr"] == 0.5
    (callback,) = resolved["trainer"]["callbacks"]
    assert callback["class_path"] == "lightray.callbacks.EarlyStopping"
    assert callback["init_args"]["monitor"] == "val_loss"


BAD_INPUT = [
    (["--model", "cli_models.Nope"], ["module 'cli_models' has no 'Nope'", "Valid choices: cli_models.TinyModel"]),
    (["--model", "nopkg.LitModel"], ["cannot import module 'nopkg'", "installed or sit in the current folder"]),
    (["--model", "Nope"], ["not a class path (module.Class)", "cli_models.TinyModel"]),
    (
        ["--model", "cli_models.TinyData"],
        ["this is a LightningDataModule, not a LightningModule", "Valid choices: cli_models.TinyModel"],
    ),
    (
        ["--model", "cli_models.TinyModel", "--data", "cli_models.TinyModel"],
        ["not a LightningDataModule", "Valid choices: cli_models.TinyData"],
    ),
    (
        ["--model", "cli_models.TinyModel", "--model.lrr", "1"],
        ["Option 'lrr' is not accepted", "TinyModel accepts: lr, hidden, step_sleep"],
    ),
    (
        ["--model", "cli_models.TinyModel", "--trainer.max_epoch", "3"],
        ["unknown option --trainer.max_epoch", "Did you mean --trainer.max_epochs", "--trainer.num_workers"],
    ),
    (["--model", "cli_models.TinyModel", "--bogus", "1"], ["unknown option --bogus", "--model", "--config"]),
    (["--model", "cli_models.TinyModel", "--trainer.max_epochs", "x"], ["--trainer.max_epochs: 'x'", "expected int"]),
    (["--model", "cli_models.TinyModel", "--trainer.precision", "17"], ["precision='17': use one of"]),
    ([], ["--model is required"]),
]


@pytest.mark.parametrize(("args", "fragments"), BAD_INPUT)
def test_bad_input_names_the_problem_and_the_choices(tmp_path, args, fragments):
    with pytest.raises((cli.UsageError, MisconfigurationError)) as info:
        cli.run(["fit", "--trainer.default_root_dir", str(tmp_path), *args])
    for fragment in fragments:
        assert fragment in str(info.value)


def test_bad_config_files(tmp_path):
    broken, unknown, scalar = tmp_path / "broken.yaml", tmp_path / "unknown.yaml", tmp_path / "scalar.yaml"
    broken.write_text("trainer:\n  max_epochs: [3\n")
    unknown.write_text("trainer:\n  max_epoch: 3\nmodel: cli_models.TinyModel\n")
    scalar.write_text("just a string\n")
    with pytest.raises(
        cli.UsageError,
        match=r"3 problems:(.|\n)*broken.yaml: not valid YAML(.|\n)*line 3(.|\n)*"
        r"missing.yaml: no such file(.|\n)*scalar.yaml: expected a mapping",
    ):
        cli.run(["fit", "-c", str(broken), "-c", str(tmp_path / "missing.yaml"), "--config", str(scalar)])
    with pytest.raises(cli.UsageError, match="unknown option --trainer.max_epoch. Did you mean --trainer.max_epochs"):
        cli.run(["fit", "--config", str(unknown)])


def test_console_script_exits_2_with_one_message_and_no_traceback():
    bad = subprocess.run([LIGHTRAY, "fit", "--model", "cli_models.Nope"], cwd=TESTS, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "lightray fit: error: --model cli_models.Nope: module 'cli_models' has no 'Nope'. "
        "Valid choices: cli_models.TinyModel."
    ]
    tune = subprocess.run([LIGHTRAY, "tune", "--model", "cli_models.TinyModel", "--tune.metric", "val_loss",
                           "--tune.scheduler", "nope", "--search_space.model.lr", "uniform(0.01, 0.1)"],
                          cwd=TESTS, capture_output=True, text=True)  # fmt: skip
    assert tune.returncode == 2
    assert tune.stderr.strip().splitlines() == [
        "lightray tune: error: --tune.scheduler 'nope': unknown scheduler. Valid choices: fifo, asha, pbt"
    ]
    assert "Traceback" not in bad.stderr + tune.stderr
    missing = subprocess.run([LIGHTRAY, "fit", "--model", "cli_models.TinyModel", "--ckpt_path", "/missing.ckpt",
                              "--trainer.max_steps", "1"], cwd=TESTS, capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == "lightray fit: error: Checkpoint '/missing.ckpt' does not exist."


def make_project(root):
    """A project folder with what must stay out of an upload: git, a venv, checkpoints, data, logs."""
    for folder in (".git/objects", "env311/lib", "checkpoints", "data", "lightning_logs/version_0", "pkg/data"):
        (root / folder).mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "pkg" / "data" / "loaders.py").write_text("X = 1\n")  # a package named data deeper down is code
    (root / ".git" / "objects" / "pack").write_bytes(b"0" * 5000)
    (root / "env311" / "pyvenv.cfg").write_text("home = /usr\n")  # a virtual environment under any name
    (root / "env311" / "lib" / "torch.so").write_bytes(b"0" * 5000)
    (root / "checkpoints" / "last.ckpt").write_bytes(b"0" * 5000)
    (root / "model.ckpt").write_bytes(b"0" * 5000)
    (root / "data" / "train.bin").write_bytes(b"0" * 5000)
    (root / "lightning_logs" / "version_0" / "metrics.csv").write_text("a\n")
    (root / "big.bin").write_bytes(b"0" * 3 * 2**20)
    (root / ".rayignore").write_text("big.bin\n")


def test_upload_guard_leaves_out_checkpoints_venvs_data_and_git(tmp_path):
    make_project(tmp_path)
    upload = jobs.plan_upload(tmp_path)
    assert sorted(path for path, _ in upload.files) == [".rayignore", "pkg/data/loaders.py", "train.py"]
    assert upload.size == len("big.bin\n") + len("X = 1\n") + len("print('hi')\n")
    assert "/env311" in upload.excludes and ".git" in upload.excludes


def test_submit_states_the_upload_and_refuses_a_large_one(tmp_path, capsys):
    make_project(tmp_path)
    (tmp_path / ".rayignore").unlink()  # big.bin (3 MiB) is now part of the upload
    argv = ["--working-dir", str(tmp_path), "--address", "http://127.0.0.1:1", "--dry-run", "--", "python", "train.py"]
    assert jobs.submit_main(argv) == 0
    err = capsys.readouterr().err
    assert f"uploading working_dir {tmp_path}: 3 files, 3.0 MiB" in err
    assert "ray job submit --address http://127.0.0.1:1 --runtime-env-json" in err and "-- python train.py" in err
    with pytest.raises(MisconfigurationError, match=r"above --max-upload-mib 1\. Largest files: big.bin \(3.0 MiB\)"):
        jobs.submit_main(["--max-upload-mib", "1", *argv])
    with pytest.raises(MisconfigurationError, match="give the job's command after `--`"):
        jobs.submit_main(["--working-dir", str(tmp_path)])


def make_secrets(root):
    """What an operator's project folder may hold and must never ship: keys, tokens, cloud credentials."""
    for path in (".env", ".env.local", "id_rsa", ".ssh/id_ed25519", "credentials.json", "certs/server.pem",
                 ".aws/credentials", ".netrc", "conf/secrets.yaml"):  # fmt: skip
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("secret\n")
    (root / ".env.example").write_text("API_KEY=\n")  # a template, not a secret
    (root / "id_rsa.pub").write_text("ssh-ed25519 AAAA\n")  # a public key


def test_submit_never_uploads_what_looks_like_a_credential(tmp_path, capsys):
    make_project(tmp_path)
    make_secrets(tmp_path)
    upload = jobs.plan_upload(tmp_path)
    sent = sorted(path for path, _ in upload.files)
    assert sent == [".env.example", ".rayignore", "id_rsa.pub", "pkg/data/loaders.py", "train.py"]
    assert sorted(upload.secrets) == [".aws", ".env", ".env.local", ".netrc", ".ssh", "certs/server.pem",
                                      "conf/secrets.yaml", "credentials.json", "id_rsa"]  # fmt: skip
    assert "/.env" in upload.excludes and "/id_rsa" in upload.excludes  # Ray leaves them out too
    argv = ["--working-dir", str(tmp_path), "--dry-run", "--", "python", "train.py"]
    assert jobs.submit_main(argv) == 0
    err = capsys.readouterr().err
    assert "left out: 9 files that look like credentials (.aws, .env, .env.local" in err
    assert jobs.submit_main(["--include", "credentials.json", *argv]) == 0
    err = capsys.readouterr().err
    assert "WARNING: sending credentials.json, which looks like a credential, because --include named it" in err


def test_submit_counts_what_links_point_to_and_refuses_links_out_of_the_folder(tmp_path, capsys):
    project, outside = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    (project / "shared").mkdir()
    (project / "shared" / "weights.bin").write_bytes(b"0" * 2**20)
    (project / "again").symlink_to(project / "shared")  # a linked folder inside: Ray sends it twice
    upload = jobs.plan_upload(project)
    assert sorted(path for path, _ in upload.files) == ["again/weights.bin", "shared/weights.bin", "train.py"]
    assert upload.size == 2 * 2**20 + len("print('hi')\n") and not upload.outside_links

    outside.mkdir()
    (outside / "dump.bin").write_bytes(b"0" * 2**20)
    (project / "data_link").symlink_to(outside)
    (project / "passwd").symlink_to("/etc/passwd")
    argv = ["--working-dir", str(project), "--dry-run", "--", "python", "train.py"]
    with pytest.raises(MisconfigurationError, match=r"symbolic links that point outside it \(data_link -> .*elsewhere"):
        jobs.submit_main(argv)
    assert jobs.submit_main(["--allow-links-outside", *argv]) == 0
    assert "5 files, 3.0 MiB" in capsys.readouterr().err  # what the links point to is counted


def test_help_lists_every_command_with_one_line_and_an_example():
    done = subprocess.run([LIGHTRAY, "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    start = lines.index("commands:")
    for name in ("fit", "validate", "test", "predict", "tune", "submit", "plot"):
        (row,) = [i for i, line in enumerate(lines[start:], start) if line.split()[:1] == [name]]
        assert len(lines[row].split()) > 2, lines[row]  # a description on the same line
        assert lines[row + 1].strip().startswith(f"lightray {name} "), lines[row + 1]  # then an example
    assert max(len(line) for line in lines) <= 120
    bare = subprocess.run([LIGHTRAY], capture_output=True, text=True)
    assert bare.returncode == 2 and "commands:" in bare.stderr


def test_version():
    done = subprocess.run([LIGHTRAY, "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"lightray {lightray.__version__}"


MAIN_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from cli_models import TinyData, TinyModel
from lightray.cli import LightningCLI

if __name__ == "__main__":
    LightningCLI(TinyModel, TinyData, trainer_defaults={{"enable_progress_bar": False}})
"""


def test_lightning_cli_runs_a_scripts_own_main_with_its_classes_as_defaults(tmp_path):
    script = tmp_path / "main.py"
    script.write_text(MAIN_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, str(script), "fit", "--trainer.max_epochs", "2", "--model.lr", "0.05",
         "--trainer.default_root_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "`Trainer.fit` stopped: `max_epochs=2` reached." in done.stderr
    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "cli_models.TinyModel" and saved["model"]["init_args"]["lr"] == 0.05
    assert saved["data"]["class_path"] == "cli_models.TinyData"
    assert saved["trainer"]["enable_progress_bar"] is False  # trainer_defaults
    missing = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "give a subcommand first: one of fit, validate, test, predict" in missing.stderr


def test_lightning_cli_without_run_builds_the_trainer_model_and_data(tmp_path):
    from cli_models import TinyData, TinyModel

    from lightray.cli import LightningCLI

    cli_ = LightningCLI(TinyModel, TinyData, run=False, args=["--model.hidden", "4", "--trainer.max_epochs", "1",
                                                              "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    assert isinstance(cli_.model, TinyModel) and cli_.model.hparams.hidden == 4
    assert isinstance(cli_.datamodule, TinyData) and cli_.trainer.max_epochs == 1
    cli_.trainer.fit(cli_.model, datamodule=cli_.datamodule)
    assert cli_.trainer.global_step > 0

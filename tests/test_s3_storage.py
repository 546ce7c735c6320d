"""Checkpoints on an S3 object store: a real S3 protocol server (moto's standalone server) on a loopback port.

pyarrow and Ray read the endpoint from ``AWS_ENDPOINT_URL``, as they would a MinIO or any S3-compatible store.
"""

from __future__ import annotations

import os
import urllib.request

import pytest
import torch
from ray_helpers import KillOnce, Regression

import lightray as pl
from lightray.callbacks import ModelCheckpoint
from lightray.testing import BoringModel

moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (dev extra)")
ray = pytest.importorskip("ray")
pyarrow_fs = pytest.importorskip("pyarrow.fs")

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)


@pytest.fixture(scope="module")
def s3():
    """A bucket on a local S3 server; the environment points pyarrow and Ray's processes at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_ENDPOINT_URL=endpoint)  # fmt: skip
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bucket", method="PUT")).read()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")  # its workers inherit the endpoint
    yield pyarrow_fs.FileSystem.from_uri("s3://bucket")[0]
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def listing(fs, folder: str) -> list[str]:
    return sorted(info.base_name for info in fs.get_file_info(pyarrow_fs.FileSelector(folder, allow_not_found=True)))


def test_save_keep_top_k_resume_and_load_from_s3(s3, tmp_path):
    def run(max_steps, ckpt_path=None):
        callback = ModelCheckpoint(dirpath="s3://bucket/local-run", every_n_train_steps=2, save_top_k=1, save_last=True)
        trainer = pl.Trainer(max_steps=max_steps, callbacks=[callback], default_root_dir=tmp_path, **QUIET)
        model = BoringModel()
        trainer.fit(model, ckpt_path=ckpt_path)
        return model, trainer

    _, trainer = run(4)
    assert listing(s3, "bucket/local-run") == ["epoch=0-step=4.ckpt", "last.ckpt"]  # step 2 removed (top-1)
    model, trainer = run(6, ckpt_path="last")  # resumed from the object store
    assert trainer.global_step == 6
    loaded = BoringModel.load_from_checkpoint("s3://bucket/local-run/last.ckpt")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_a_killed_worker_resumes_from_checkpoints_on_s3(s3, tmp_path):
    def fit(storage_path, name, callbacks=(), **kwargs):
        pl.seed_everything(1)
        model = Regression()
        top2 = ModelCheckpoint(every_n_train_steps=3, save_top_k=2, monitor="train_loss")
        trainer = pl.Trainer(max_epochs=2, num_workers=2, storage_path=storage_path, name=name,
                             default_root_dir=tmp_path, callbacks=[top2, *callbacks], **QUIET, **kwargs)  # fmt: skip
        trainer.fit(model)
        return model, trainer

    reference, _ = fit(str(tmp_path / "runs"), "reference")
    marker = str(tmp_path / "killed")
    resumed, trainer = fit("s3://bucket/runs", "killed", callbacks=[KillOnce(marker, step=5)], max_failures=1)
    assert os.path.exists(marker) and trainer.global_step == 16
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    folders = [name for name in listing(s3, "bucket/runs/killed") if name.endswith(".ckpt")]
    assert len(folders) == 2  # Ray's retention followed save_top_k on the object store
    best = trainer.checkpoint_callback.best_model_path
    assert best.startswith("s3://bucket/runs/killed/")
    loaded = Regression.load_from_checkpoint(best)
    assert loaded.net[0].weight.shape == (16, 4)

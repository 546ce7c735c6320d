"""lightray.demos: Lightning's ``demos.boring_classes`` names, and BoringModel training to Lightning's weights."""

from __future__ import annotations

import importlib

import pytest
import torch

import lightray
from lightray.demos import boring_classes

lightning = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Lightning's hints (num_workers, few batches)

NAMES = {
    "demos.boring_classes": ["BoringDataModule", "BoringDataModuleNoLen", "BoringModel", "DemoModel",
                             "ManualOptimBoringModel", "Net", "RandomDataset", "RandomDictDataset",
                             "RandomIterableDataset", "RandomIterableDatasetWithLen"],
    "demos": ["BoringDataModule", "BoringModel", "DemoModel"],
}  # fmt: skip


@pytest.mark.parametrize("module", list(NAMES))
def test_lightnings_demo_names_exist_in_lightray(module):
    theirs = importlib.import_module(f"pytorch_lightning.{module}")
    ours = importlib.import_module(f"lightray.{module}")
    for name in NAMES[module]:
        assert hasattr(theirs, name), f"{name} is not Lightning's (pytorch_lightning.{module}): claim only its names"
        assert hasattr(ours, name), f"lightray.{module} lacks Lightning's {name}"
    assert set(NAMES["demos.boring_classes"]) == set(boring_classes.__all__)


def _fit(framework, model_name: str = "BoringModel", datamodule: bool = False, **limits) -> dict[str, torch.Tensor]:
    demos = importlib.import_module(f"{framework.__name__}.demos.boring_classes")
    framework.seed_everything(7)
    model = getattr(demos, model_name)()
    trainer = framework.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, **limits,
    )  # fmt: skip
    trainer.fit(model, datamodule=demos.BoringDataModule() if datamodule else None)
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _assert_close(ours, theirs):
    assert ours.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=0)


def test_boring_model_trains_one_epoch_to_lightnings_weights():
    ours, theirs = _fit(lightray), _fit(lightning)
    _assert_close(ours, theirs)
    torch.manual_seed(7)
    assert not torch.allclose(ours["layer.weight"], torch.nn.Linear(32, 2).weight)  # it trained


@pytest.mark.parametrize(
    ("model_name", "datamodule"), [("ManualOptimBoringModel", False), ("BoringModel", True)], ids=["manual", "dm"]
)
def test_manual_optimization_and_the_datamodule_match_lightning(model_name, datamodule):
    limits = dict(limit_train_batches=16, limit_val_batches=4)
    _assert_close(_fit(lightray, model_name, datamodule, **limits), _fit(lightning, model_name, datamodule, **limits))


def test_data_sets_draw_what_lightnings_draw():
    for name, args in [("RandomDataset", (4, 3)), ("RandomDictDataset", (4, 3))]:
        torch.manual_seed(1)
        theirs = list(getattr(lightning.demos.boring_classes, name)(*args))
        torch.manual_seed(1)
        ours = list(getattr(boring_classes, name)(*args))
        assert len(ours) == len(theirs) == 3
        for a, b in zip(ours, theirs):
            assert (a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)) if isinstance(a, dict) else (
                torch.equal(a, b)
            )  # fmt: skip
    for name in ("RandomIterableDataset", "RandomIterableDatasetWithLen"):
        torch.manual_seed(2)
        theirs = list(getattr(lightning.demos.boring_classes, name)(4, 5))
        torch.manual_seed(2)
        ours = list(getattr(boring_classes, name)(4, 5))
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)) and len(ours) == 5
    assert len(boring_classes.RandomIterableDatasetWithLen(4, 5)) == 5


def test_net_and_demo_model_compute_what_lightnings_compute():
    torch.manual_seed(0)
    for name, x in [("Net", torch.randn(2, 1, 28, 28)), ("DemoModel", torch.randn(4, 32))]:
        ours, theirs = getattr(boring_classes, name)(), getattr(lightning.demos.boring_classes, name)()
        theirs.load_state_dict(ours.state_dict())  # same parameter names and shapes
        assert torch.equal(ours.eval()(x), theirs.eval()(x))
    assert isinstance(lightray.demos.DemoModel(), lightray.LightningModule)

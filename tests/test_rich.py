"""RichProgressBar and RichModelSummary (the ``rich`` extra): what they draw, next to Lightning's own."""

from __future__ import annotations

import io
import re
import sys

import pytest
import torch

import lightray as pl
from lightray.testing import BoringModel

pytest.importorskip("rich", reason="the rich extra (in dev) draws these")
lightning = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ShowsLoss(BoringModel):
    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("loss", loss, prog_bar=True)
        return loss


def test_rich_progress_bar_draws_each_epoch_with_its_metrics(tmp_path):
    screen = io.StringIO()
    bar = pl.callbacks.RichProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 140})
    trainer = pl.Trainer(max_epochs=2, callbacks=[bar], default_root_dir=tmp_path, logger=False,
                         enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
    assert trainer.progress_bar_callback is bar
    trainer.fit(ShowsLoss())
    text = ANSI.sub("", screen.getvalue())
    assert "Sanity Checking" in text and "Epoch 0" in text and "Epoch 1" in text and "32/32" in text
    shown = float(trainer.progress_bar_metrics["loss"])
    assert f"loss: {shown:.3f}" in text  # the epoch's last metrics, in the theme's format
    assert "it/s" in text and "Validation" in text


def test_rich_progress_bar_leaves_training_as_lightnings_does(tmp_path):
    weights = {}
    for framework in (pl, lightning):
        framework.seed_everything(0)
        model = _demo_model(framework)
        bar = framework.callbacks.RichProgressBar(console_kwargs={"file": io.StringIO()})
        framework.Trainer(max_epochs=2, callbacks=[bar], default_root_dir=tmp_path / framework.__name__, logger=False,
                          enable_checkpointing=False, enable_model_summary=False, accelerator="cpu",
                          limit_train_batches=32, limit_val_batches=4).fit(model)  # fmt: skip
        weights[framework.__name__] = {k: v.clone() for k, v in model.state_dict().items()}
    for key, value in weights["lightray"].items():
        torch.testing.assert_close(value, weights["pytorch_lightning"][key], rtol=0, atol=1e-6)


def _demo_model(framework):
    """Lightning's demo BoringModel (lightray.demos has the same), showing its loss in the bar."""
    import importlib

    demo = importlib.import_module(f"{framework.__name__}.demos.boring_classes").BoringModel

    class Shown(demo):
        def training_step(self, batch, batch_idx):
            loss = self.loss(self(batch))
            self.log("loss", loss, prog_bar=True)
            return loss

    return Shown()


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table drawn in ``text`` (cells split on the box's bars)."""
    rows = []
    for line in ANSI.sub("", text).splitlines():
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


def test_rich_model_summary_lists_what_lightnings_lists(tmp_path, capsys):
    def make_net(framework):
        class Net(framework.LightningModule):
            def __init__(self):
                super().__init__()
                self.encoder = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU())
                self.head = torch.nn.Linear(16, 2)
                self.head.requires_grad_(False)

            def training_step(self, batch, batch_idx):
                return self.head(self.encoder(batch)).sum()

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Net()

    import rich

    rich.reconfigure()  # Lightning's RichProgressBar (an earlier test) points rich's global console at its own file
    data = torch.utils.data.DataLoader(torch.randn(4, 32), batch_size=2)
    tables = {}
    for framework in (pl, lightning):
        model = make_net(framework)
        framework.Trainer(max_steps=1, callbacks=[framework.callbacks.RichModelSummary()], logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu",
                          default_root_dir=tmp_path).fit(model, data)  # fmt: skip
        tables[framework.__name__] = capsys.readouterr().out
    ours, theirs = _table_rows(tables["lightray"]), _table_rows(tables["pytorch_lightning"])
    assert (
        [row[:5] for row in ours]
        == [row[:5] for row in theirs]
        == [
            ["0", "encoder", "Sequential", "528", "train"],
            ["1", "head", "Linear", "34", "train"],
        ]
    )
    for line in ("Trainable params: 528", "Non-trainable params: 34", "Total params: 562"):
        assert line in ANSI.sub("", tables["lightray"]) and line in ANSI.sub("", tables["pytorch_lightning"])


def test_without_rich_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(ModuleNotFoundError, match=r"`RichProgressBar` needs `rich`: pip install 'lightray\[rich\]'"):
        pl.callbacks.RichProgressBar()
    with pytest.raises(ModuleNotFoundError, match=r"`RichModelSummary` needs `rich`"):
        pl.callbacks.RichModelSummary()

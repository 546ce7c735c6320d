"""The model summary's sizes: with an ``example_input_array``, each layer's input and output shapes, as
Lightning's summary shows them."""

from __future__ import annotations

import pytest
import torch

import lightray as pl
from lightray.callbacks.model_summary import summary_rows

lightning = pytest.importorskip("pytorch_lightning", reason="comparison tests need the dev extra (pytorch-lightning)")


def _net(framework, example):
    class Net(framework.LightningModule):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5))
            self.heads = torch.nn.ModuleList([torch.nn.Linear(16, 2), torch.nn.Linear(16, 3)])
            self.example_input_array = example

        def forward(self, x, scale=1.0):
            hidden = self.encoder(x) * scale
            return [head(hidden) for head in self.heads]

    return Net()


@pytest.mark.parametrize("example", [torch.randn(10, 32), (torch.randn(4, 32), 2.0)], ids=["tensor", "tuple"])
@pytest.mark.parametrize("max_depth", [1, 2])
def test_in_and_out_sizes_match_lightnings(example, max_depth):
    from pytorch_lightning.utilities.model_summary import ModelSummary as TheirSummary

    ours = _net(pl, example)
    ours.encoder.eval()  # a submodule left in eval mode keeps it, and the summary says so
    header, rows, _ = summary_rows(ours, max_depth)
    theirs = TheirSummary(_net(lightning, example), max_depth=max_depth)
    assert header[-2:] == ["In sizes", "Out sizes"]
    assert [row[0] for row in rows] == theirs.layer_names
    assert [row[-2] for row in rows] == [str(size) for size in theirs.in_sizes]
    assert [row[-1] for row in rows] == [str(size) for size in theirs.out_sizes]
    assert not ours.encoder.training and ours.heads.training  # the forward pass left every mode as it was


def test_without_an_example_there_are_no_size_columns():
    header, rows, _ = summary_rows(_net(pl, None))
    assert header == ["Name", "Type", "Params", "Mode"] and len(rows[0]) == 4

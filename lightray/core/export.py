"""Exporting a LightningModule: TorchScript (script or trace) and ONNX. The module's ``to_torchscript`` /
``to_onnx`` put it in eval mode around these. Runs anywhere."""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any

import torch

from lightray.utilities.apply_func import apply_to_tensors

if TYPE_CHECKING:
    from lightray.core.module import LightningModule


def _sample(module: LightningModule, given: Any, what: str) -> Any:
    sample = given if given is not None else module.example_input_array
    if sample is None:
        raise ValueError(f"{what} needs input_sample, or self.example_input_array set")
    return apply_to_tensors(sample, lambda t: t.to(module.device))


def to_torchscript(
    module: LightningModule, file_path: str | os.PathLike | None, method: str, example_inputs: Any
) -> Any:
    """``module`` scripted or traced; saved to ``file_path`` when given."""
    if method == "script":
        compiled = torch.jit.script(module)
    elif method == "trace":
        inputs = _sample(module, example_inputs, "to_torchscript(method='trace')")
        compiled = torch.jit.trace(module, example_inputs=inputs)
    else:
        raise ValueError(f"to_torchscript(method={method!r}): use 'script' or 'trace'")
    if file_path is not None:
        torch.jit.save(compiled, os.fspath(file_path))
    return compiled


def to_onnx(module: LightningModule, file_path: str | os.PathLike, input_sample: Any, **kwargs: Any) -> None:
    """``module`` exported to ONNX with ``torch.onnx.export``."""
    if importlib.util.find_spec("onnx") is None:
        raise ModuleNotFoundError("to_onnx needs the onnx package: pip install onnx")
    torch.onnx.export(module, _sample(module, input_sample, "to_onnx"), os.fspath(file_path), **kwargs)

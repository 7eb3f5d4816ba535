"""Standalone models out of a trained supernet (or fresh): state_dict, TorchScript, ONNX.

Every export is read back and run against the PyTorch model on the same input; the
largest absolute difference is returned so the caller can show (and tests can assert)
that the exported file computes what the model computes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from trionet_dsl.checkpoint import load_checkpoint
from trionet_dsl.emit import emit_arch, emit_space
from trionet_dsl.errors import SpaceError
from trionet_dsl.io import atomic_write
from trionet_dsl.loader import LoadedArch, compile_arch_text, compile_space_text
from trionet_dsl.model import TrioNet, build
from trionet_dsl.supernet import Supernet, extract

Format = Literal["pt", "torchscript", "onnx"]
SUFFIX = {"pt": ".pt", "torchscript": ".ts", "onnx": ".onnx"}


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    params: int


def model_from_checkpoint(loaded: LoadedArch, checkpoint: str | Path | None, seed: int = 0) -> TrioNet:
    """The arch's standalone model: weights inherited from a supernet checkpoint, or fresh."""
    if checkpoint is None:
        return build(loaded.space, loaded.arch, seed=seed)
    ck = load_checkpoint(checkpoint)
    if ck.get("space_text") != emit_space(loaded.space.space):
        raise SpaceError(f"checkpoint {checkpoint} was trained on another space than {loaded.space.name}",
                         file=str(checkpoint), hint="export with the space the supernet was trained on")
    if ck.get("kind") == "arch":
        if ck.get("arch_text") and compile_arch_text(ck["arch_text"], space=loaded.space).arch.blocks != loaded.arch.blocks:
            raise SpaceError(f"checkpoint {checkpoint} holds a different arch", file=str(checkpoint))
        model = build(loaded.space, loaded.arch)
        model.load_state_dict(ck["model"])
        return model
    model = extract(Supernet.from_checkpoint(ck, loaded.space), loaded.arch)
    return model.eval()


def example_input(loaded: LoadedArch, batch: int = 2, seed: int = 0) -> torch.Tensor:
    i = loaded.space.space.input
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, i.channels, i.height, i.width, generator=g)


def export(model: nn.Module, loaded: LoadedArch, path: str | Path, fmt: Format = "pt") -> ExportResult:
    """Write ``model`` in ``fmt`` atomically, reload it, and compare outputs."""
    p = Path(path)
    model = model.eval()
    x = example_input(loaded)
    with torch.no_grad():
        ref = model(x)
    if fmt == "pt":
        payload = {"format": "trionet-dsl/model/1", "space_text": emit_space(loaded.space.space),
                   "arch_text": emit_arch(loaded.arch), "state_dict": model.state_dict()}
        atomic_write(p, lambda f: torch.save(payload, f))
        again = load_exported(p)
    elif fmt == "torchscript":
        scripted = torch.jit.script(model)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        atomic_write(p, lambda f: f.write(buf.getvalue()))
        again = torch.jit.load(str(p))
    elif fmt == "onnx":
        buf = io.BytesIO()
        with warnings.catch_warnings():
            # the axial operator's "axis <= max_len" check reads a shape; the graph is traced at the
            # space's fixed input size (only the batch is dynamic), so treating it as constant is right
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        atomic_write(p, lambda f: f.write(buf.getvalue()))
        try:
            import onnxruntime as ort
        except ImportError:
            return ExportResult(p, fmt, float("nan"), sum(t.numel() for t in model.parameters()))
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        out = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])
        return ExportResult(p, fmt, (out - ref).abs().max().item(), sum(t.numel() for t in model.parameters()))
    else:
        raise SpaceError(f"unknown export format '{fmt}'", hint="use pt, torchscript or onnx")
    with torch.no_grad():
        out = again.eval()(x)
    return ExportResult(p, fmt, (out - ref).abs().max().item(), sum(t.numel() for t in model.parameters()))


def load_exported(path: str | Path) -> TrioNet:
    """Rebuild a model written with ``fmt="pt"`` (safe: weights_only load, arch from text)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any damage is reported the same way
        raise SpaceError(f"{path} is not a readable exported model ({type(exc).__name__})", file=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != "trionet-dsl/model/1":
        raise SpaceError(f"{path} is not a trionet-dsl exported model", file=str(path))
    rs = compile_space_text(data["space_text"], f"{path}:space")
    la = compile_arch_text(data["arch_text"], f"{path}:arch", space=rs)
    model = build(rs, la.arch)
    model.load_state_dict(data["state_dict"])
    return model.eval()

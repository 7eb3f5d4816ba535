"""Standalone models out of a trained supernet (or fresh): state_dict, TorchScript, ONNX.

What is exported is what search measured: the sub-network's BatchNorm statistics are
recalibrated on the same training batches the search evaluator uses (the supernet's own
running statistics mix every sampled sub-network), and the written file is then *run*
on the validation split and its accuracy recorded. Every exported model takes raw pixels
(0-255, N x C x H x W at the space's input size): the training normalisation is the
graph's first layer (:class:`~trionet_dsl.nn.network.WithPreprocessing`), and the file's
metadata says so, with the class names.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from trionet_dsl.app.datasets import checkpoint_data, load_dataset
from trionet_dsl.app.options import check_seed, check_val_fraction, set_threads
from trionet_dsl.lang.emit import emit_arch, emit_space
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write
from trionet_dsl.nn.network import TrioNet, WithPreprocessing, build
from trionet_dsl.nn.supernet import Supernet, extract, load_weights
from trionet_dsl.space.loader import LoadedArch, compile_arch_text, compile_space_text, load_arch
from trionet_dsl.train.checkpoint import load_checkpoint
from trionet_dsl.train.config import ONE_SHOT_BN_BATCHES

if TYPE_CHECKING:
    from trionet_dsl.train.data import DataBundle

Format = Literal["pt", "torchscript", "onnx"]
SUFFIX: dict[Format, str] = {"pt": ".pt", "torchscript": ".ts", "onnx": ".onnx"}
FORMAT_TAG = "trionet-dsl/model/2"
BN_HEADER = re.compile(r"BN recalibrated on (\d+) training batches")  # written by search, read by export
PRECISION_HEADER = re.compile(r"BN recalibrated on \d+ training batches, precision (bf16|fp16)")  # likewise
INPUT_DOC = "raw pixels 0-255 (uint8 values as float), N x C x H x W at the space's input size; normalisation is inside"


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    params: int
    accuracy: float | None = None  # of the written file, on the validation split, from raw pixels
    metadata: dict[str, Any] = field(default_factory=dict)


def format_for(out: Path | None, fmt: str | None) -> Format:
    """The export format: as given, else from the output suffix, else ``pt``; a mismatch is an error."""
    by_suffix: dict[str, Format] = {v: k for k, v in SUFFIX.items()} | {".torchscript": "torchscript", ".pth": "pt"}
    inferred = by_suffix.get(out.suffix.lower()) if out is not None else None
    if fmt is None:
        return inferred or "pt"
    if fmt not in SUFFIX:
        from trionet_dsl.lang.errors import did_you_mean

        raise SpaceError(f"unknown format '{fmt}'", hint=did_you_mean(fmt, list(SUFFIX)))
    if out is not None and out.suffix and inferred != fmt:
        raise SpaceError(
            f"--out {out} has suffix '{out.suffix}' but --format is {fmt}",
            hint=f"write {out.with_suffix(SUFFIX[fmt])}, or drop --format to export as {inferred or 'the suffix says'}",
        )
    return fmt


def model_from_checkpoint(
    loaded: LoadedArch,
    checkpoint: str | Path | dict | None,
    seed: int = 0,
    calibration: list[torch.Tensor] | None = None,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> TrioNet:
    """The arch's standalone model, on the CPU: weights inherited from a checkpoint, or fresh.

    From a supernet, ``calibration`` batches (see ``train.calibration_batches``) re-estimate
    the sub-network's BN statistics exactly as the search evaluator does before extraction
    (on ``device``, autocast to ``precision``, as search ran); ``None`` keeps the supernet's
    shared running statistics.
    """
    from trionet_dsl.train.checkpoint import require_space

    if checkpoint is None:
        return build(loaded.space, loaded.arch, seed=seed)
    ck = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    where = "checkpoint" if isinstance(checkpoint, dict) else str(checkpoint)
    require_space(ck, emit_space(loaded.space.space), loaded.space.name, where)
    if ck.get("kind") == "arch":
        if (
            ck.get("arch_text")
            and compile_arch_text(ck["arch_text"], space=loaded.space).arch.blocks != loaded.arch.blocks
        ):
            raise SpaceError(f"checkpoint {where} holds a different arch", file=where)
        model = build(loaded.space, loaded.arch)
        load_weights(model, ck["model"])
        return model.eval()
    net = Supernet.from_checkpoint(ck, loaded.space).activate(loaded.arch)
    if calibration is not None:
        from trionet_dsl.train.evaluate import recalibrate_bn

        net.to(device or torch.device("cpu"))
        recalibrate_bn(net, calibration, precision)
    return extract(net.eval()).cpu().eval()  # the file is written from CPU tensors: loadable anywhere


def example_input(loaded: LoadedArch, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Raw-pixel-like input (0-255) for comparing a written file with the model."""
    i = loaded.space.space.input
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, i.channels, i.height, i.width, generator=g) * 255


def _runner(path: Path, fmt: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits of the *written file* (not the in-memory model) for a batch of raw pixels."""
    if fmt == "pt":
        model = load_exported(path)
        return lambda x: model(x)
    if fmt == "torchscript":
        scripted = torch.jit.load(str(path)).eval()
        return lambda x: scripted(x)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])


@torch.no_grad()
def file_accuracy(path: str | Path, fmt: str, raw: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of an exported file fed raw pixels (0-255)."""
    run = _runner(Path(path), fmt)
    correct = 0
    for i in range(0, len(raw), batch_size):
        correct += int((run(raw[i : i + batch_size].contiguous()).argmax(1) == labels[i : i + batch_size]).sum())
    return correct / max(1, len(raw))


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise SpaceError("ONNX export needs onnx and onnxruntime", hint="pip install 'trionet-dsl[export]'") from None


def export(
    model: nn.Module, loaded: LoadedArch, path: str | Path, fmt: Format = "pt", metadata: dict[str, Any] | None = None
) -> ExportResult:
    """Write ``model`` (raw-pixel input, see :class:`WithPreprocessing`) in ``fmt`` atomically,
    reload the file and compare its outputs with the model's."""
    p = Path(path)
    if p.is_dir():
        raise SpaceError(
            f"--out {p} is a folder", file=str(p), hint=f"give a file name, e.g. {p / ('model' + SUFFIX[fmt])}"
        )
    if fmt not in SUFFIX:
        raise SpaceError(f"unknown export format '{fmt}'", hint="use pt, torchscript or onnx")
    model = model.eval()
    meta = {"format": FORMAT_TAG, "input": INPUT_DOC, **(metadata or {})}
    x = example_input(loaded)
    with torch.no_grad():
        ref = model(x)
    if fmt == "pt":
        net = model.net if isinstance(model, WithPreprocessing) else model
        pre = (
            {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(), "scale": model.scale}
            if isinstance(model, WithPreprocessing)
            else None
        )
        payload = {
            "format": FORMAT_TAG,
            "space_text": emit_space(loaded.space.space),
            "arch_text": emit_arch(loaded.arch),
            "state_dict": net.state_dict(),
            "preprocess": pre,
            "meta_json": json.dumps(meta),
        }
        atomic_write(p, lambda f: torch.save(payload, f))
    elif fmt == "torchscript":
        scripted = torch.jit.script(model)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf, _extra_files={"trionet.json": json.dumps(meta)})
        atomic_write(p, lambda f: f.write(buf.getvalue()))
    else:
        _require_onnx()
        import onnx

        buf = io.BytesIO()
        with warnings.catch_warnings():
            # the axial operator's "axis <= max_len" check reads a shape; the graph is traced at the
            # space's fixed input size (only the batch is dynamic), so treating it as constant is right
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (x,),
                buf,  # type: ignore[arg-type]  # annotated str | PathLike; the dynamo=False exporter writes file objects too
                dynamo=False,
                opset_version=17,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        proto = onnx.load_from_string(buf.getvalue())
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
        data = proto.SerializeToString()
        atomic_write(p, lambda f: f.write(data))
    with torch.no_grad():
        out = _runner(p, fmt)(x)
    params = sum(t.numel() for n, t in model.named_parameters())
    return ExportResult(p, fmt, (out - ref).abs().max().item(), params, metadata=meta)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata an exported file carries (any format)."""
    p = Path(path)
    raw = p.read_bytes()[:4]
    if raw[:2] == b"PK":
        import zipfile

        with zipfile.ZipFile(p) as z:
            scripted = any("/code/" in n for n in z.namelist())
        if not scripted:
            data = torch.load(p, map_location="cpu", weights_only=True)
            return json.loads(data["meta_json"]) if isinstance(data, dict) and "meta_json" in data else {}
        files = {"trionet.json": ""}
        torch.jit.load(str(p), _extra_files=files)
        return json.loads(files["trionet.json"] or "{}")
    import onnx

    proto = onnx.load(str(p))
    out: dict[str, Any] = {}
    for e in proto.metadata_props:
        try:
            out[e.key] = json.loads(e.value)
        except json.JSONDecodeError:
            out[e.key] = e.value
    return out


def load_exported(path: str | Path) -> nn.Module:
    """Rebuild a model written with ``fmt="pt"`` (safe: weights_only load, arch from text).

    The result takes raw pixels like the TorchScript and ONNX exports.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpaceError(f"{path} is not a readable exported model ({type(exc).__name__})", file=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
        raise SpaceError(
            f"{path} is not a trionet-dsl exported model",
            file=str(path),
            hint="re-export it with this version: trionet export ARCH --checkpoint ...",
        )
    rs = compile_space_text(data["space_text"], f"{path}:space")
    la = compile_arch_text(data["arch_text"], f"{path}:arch", space=rs)
    model = build(rs, la.arch)
    model.load_state_dict(data["state_dict"])
    pre = data.get("preprocess")
    if pre:
        return WithPreprocessing(model, pre["mean"], pre["std"], pre["scale"]).eval()
    return model.eval()


def _weights_and_data(
    la: LoadedArch,
    checkpoint: str | Path | None,
    fresh: bool,
    seed: int,
    data: str | None,
    val_fraction: float | None,
    val_data: str | None,
    force: bool,
    workers: int = 0,
) -> tuple[dict[str, Any] | None, DataBundle | None, str | None]:
    """The checkpoint (None with ``fresh``) and the data to measure on: the checkpoint's own split."""
    if not fresh:
        assert checkpoint is not None  # without --fresh a checkpoint is required (checked by the caller)
        from trionet_dsl.lang.emit import emit_space
        from trionet_dsl.train.checkpoint import load_checkpoint, require_space

        ck = load_checkpoint(checkpoint)
        require_space(ck, emit_space(la.space.space), la.space.name, checkpoint)
        bundle, described = checkpoint_data(ck, la.space, checkpoint, data, val_fraction, val_data, force, workers)
        return ck, bundle, described
    if data is not None:
        bundle = load_dataset(data, la.space, val_fraction or 0.2, seed, val_source=val_data, workers=workers)
        return None, bundle, f"{data}: {len(bundle.val_y)} validation images"
    return None, None, None


def _metadata(
    la: LoadedArch, mean: list[float], std: list[float], bundle: DataBundle | None, bn: str, described: str | None
) -> dict[str, Any]:
    """What an exported file says about itself: input layout, normalisation, classes, provenance."""
    i = la.space.space.input
    return {
        "arch": la.arch.name,
        "space": la.space.name,
        "channels": i.channels,
        "height": i.height,
        "width": i.width,
        "mean": mean,
        "std": std,
        "scale": 255.0,
        "classes": bundle.class_names if bundle is not None else [str(k) for k in range(la.space.space.classes)],
        "bn": bn,
        "data": described,
    }


def export_job(
    arch_file: str | Path,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    fmt: str | None = None,
    fresh: bool = False,
    seed: int = 0,
    space: str | Path | None = None,
    data: str | None = None,
    val_fraction: float | None = None,
    val_data: str | None = None,
    force: bool = False,
    recalibrate: bool = True,
    bn_batches: int | None = None,
    threads: int | None = None,
    device: str = "auto",
    precision: str | None = None,
    workers: int = 0,
) -> ExportResult:
    """Export an arch as a standalone model with inherited (or fresh) weights, and measure the file.

    From a supernet, BN is recalibrated as the search evaluator did (``bn_batches`` from the
    arch's search header, else 8), so the file's validation accuracy equals the one-shot
    accuracy search reported for the arch. ``device``/``precision`` are those of that
    recalibration (``precision`` defaults to the one in the arch's search header, else fp32); the
    file is written, and measured, on the CPU in fp32.
    """
    from trionet_dsl.train.device import check_precision, resolve_device

    set_threads(threads)
    check_seed(seed)
    arch_path = Path(arch_file)
    header = arch_path.read_text(errors="replace") if arch_path.is_file() else ""
    if precision is None:
        pm = PRECISION_HEADER.search(header)
        precision = pm.group(1) if pm else "fp32"
    dev = resolve_device(device)
    check_precision(precision, dev)
    fmt = format_for(Path(out) if out is not None else None, fmt)
    if fmt == "onnx":
        _require_onnx()  # before any loading: a missing extra fails in a second
    target = Path(out) if out is not None else arch_path.with_suffix(SUFFIX[fmt])
    if target.is_dir():
        raise SpaceError(
            f"--out {target} is a folder", hint=f"give a file name, e.g. {target / (arch_path.stem + SUFFIX[fmt])}"
        )
    if checkpoint is None and not fresh:
        raise SpaceError("export needs --checkpoint (inherit trained weights) or --fresh (new weights)")
    if val_fraction is not None:
        check_val_fraction(val_fraction)
    la = load_arch(arch_file, space)
    if bn_batches is None:
        m = BN_HEADER.search(header)
        bn_batches = int(m.group(1)) if m else ONE_SHOT_BN_BATCHES
    if bn_batches < 1:
        raise SpaceError(
            f"--bn-batches {bn_batches}: recalibration needs at least one batch",
            hint="or pass --no-recalibrate to keep the supernet's statistics",
        )
    ck, bundle, described = _weights_and_data(la, checkpoint, fresh, seed, data, val_fraction, val_data, force, workers)
    calib = None
    if ck is not None and ck.get("kind") == "supernet" and recalibrate:
        from trionet_dsl.train.evaluate import CALIBRATION_BATCH_SIZE, calibration_batches

        # checkpoint_data always loads the checkpoint's data through load_data (which records its config)
        assert bundle is not None and bundle.config is not None
        calib = calibration_batches(bundle, bn_batches, CALIBRATION_BATCH_SIZE, bundle.config.seed)
    model = model_from_checkpoint(la, ck, seed=seed, calibration=calib, device=dev, precision=precision)
    c = la.space.space.input.channels
    mean, std = (bundle.mean, bundle.std) if bundle is not None else ([0.0] * c, [1.0] * c)
    bn = (
        f"recalibrated on {bn_batches} training batches"
        if calib is not None
        else ("supernet running statistics" if ck is not None and ck.get("kind") == "supernet" else "trained")
    )
    meta = _metadata(la, mean, std, bundle, bn, described)
    wrapped = WithPreprocessing(model, mean, std).eval()
    if bundle is not None and bundle.val_raw is not None:
        from trionet_dsl.train.evaluate import evaluate

        meta["val_accuracy"] = evaluate(wrapped, bundle.val_raw * 255.0, bundle.val_y, channels_last=False)
    elif bundle is not None:  # streamed: the same measurement, batch by batch
        from trionet_dsl.train.data import iterate
        from trionet_dsl.train.evaluate import accuracy

        raw = ((x * 255.0, y) for x, y in iterate(bundle, "val", 256, 0, 0, augment=False, normalise=False))
        meta["val_accuracy"] = accuracy(wrapped, raw, channels_last=False)
    res = export(wrapped, la, target, fmt, meta)
    if bundle is not None and bundle.val_raw is not None:  # the written file itself, fed raw pixels
        res.accuracy = file_accuracy(res.path, fmt, bundle.val_raw * 255.0, bundle.val_y)
    return res


export_arch = export_job

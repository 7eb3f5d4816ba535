"""Where and in what precision a run computes: ``--device`` and ``--precision``.

One place turns the options into a ``torch.device``, an autocast context and (fp16 only)
a gradient scaler, so train, search and export agree and refuse the same bad input with
the same one-line message. Results always leave the device as CPU tensors
(:func:`to_cpu`): a checkpoint written on a GPU loads on a laptop.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Literal

import torch

from trionet_dsl.lang.errors import SpaceError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; a device that
    is not there is a SpaceError (one line at the CLI), not a CUDA traceback at the first tensor."""
    if isinstance(name, torch.device):
        name = str(name)
    text = (name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m:
        if not torch.cuda.is_available():
            raise SpaceError(
                f"--device {text}: no CUDA GPU is available (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'none'})",
                hint="use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU",
            )
        index = int(m.group(1) or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise SpaceError(
                f"--device {text}: there is no GPU {index} ({count} GPU(s) visible)",
                hint=f"use cuda:0 to cuda:{count - 1}" if count > 1 else "use --device cuda",
            )
        return torch.device("cuda", index)
    if text == "mps":
        if not torch.backends.mps.is_available():
            raise SpaceError("--device mps: Apple's Metal backend is not available here", hint="use --device cpu")
        return torch.device("mps")
    raise SpaceError(f"unknown --device '{name}'", hint="use auto, cpu, cuda, cuda:N or mps")


def check_precision(precision: str, device: torch.device) -> Precision:
    """Refuse a precision the device cannot autocast to, before any work."""
    if precision not in PRECISIONS:
        raise SpaceError(f"unknown --precision '{precision}'", hint="use fp32, bf16 or fp16")
    if precision == "fp16" and device.type == "cpu":
        raise SpaceError(
            "--precision fp16 is not supported on the CPU (no fast fp16 kernels, and fp16 needs loss scaling)",
            hint="use --precision bf16 on the CPU, or fp16 with --device cuda",
        )
    return precision  # type: ignore[return-value]  # checked against PRECISIONS above


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The forward pass's mixed-precision context (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler for fp16 (small gradients would underflow); disabled (a pass-through) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a module's parameters live on (CPU for a module without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def to_cpu(obj: Any) -> Any:
    """A copy of a (nested) state dict with every tensor on the CPU, for files any machine can load."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_cpu(v) for v in obj)
    return obj

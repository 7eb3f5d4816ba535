"""Checkpoints: plain dicts of tensors and JSON values, written atomically, read with
``weights_only=True`` (a checkpoint is data: loading one never runs code).

A checkpoint carries the canonical text of its space (and arch), so it can be used
without the original files and checked against the ones given on the command line.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from trionet_dsl.errors import SpaceError
from trionet_dsl.io import atomic_write

FORMAT = "trionet-dsl/checkpoint/1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (temp file + fsync + rename)."""
    data = {"format": FORMAT, **payload}
    return atomic_write(path, lambda f: torch.save(data, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; any damage becomes a SpaceError that says what to do."""
    p = Path(path)
    if not p.is_file():
        raise SpaceError(f"checkpoint {p} does not exist", file=str(p),
                         hint="train first: trionet train SPACE --out DIR (writes DIR/supernet.pt)")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
            KeyError, AttributeError, IndexError, TypeError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise SpaceError(f"checkpoint {p} is corrupted or not a checkpoint ({reason})", file=str(p),
                         hint="re-run training, or --resume from an earlier good checkpoint") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SpaceError(f"{p} is not a trionet-dsl checkpoint", file=str(p),
                         hint=f"expected format {FORMAT}")
    return data

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

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write

FORMAT = "trionet-dsl/checkpoint/1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (temp file + fsync + rename)."""
    data = {"format": FORMAT, **payload}
    return atomic_write(path, lambda f: torch.save(data, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; any damage becomes a SpaceError that says what to do."""
    p = Path(path)
    if not p.is_file():
        raise SpaceError(
            f"checkpoint {p} does not exist",
            file=str(p),
            hint="train first: trionet train SPACE --out DIR (writes DIR/supernet.pt)",
        )
    with p.open("rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK" and magic[:1] != b"\x80":  # torch.save writes a zip archive (or a legacy pickle)
        raise SpaceError(
            f"{p} is not a checkpoint (not a file written by torch.save)",
            file=str(p),
            hint="pass the supernet.pt (or model.pt) that `trionet train` wrote",
        )
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        KeyError,
        AttributeError,
        IndexError,
        TypeError,
    ) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        # torch's weights_only refusal is a page of advice about trusting the file: keep it short
        reason = (
            "it holds objects a weights-only load refuses"
            if "weights_only" in str(exc)
            else first[:200] or type(exc).__name__
        )
        raise SpaceError(
            f"checkpoint {p} is corrupted or not a checkpoint ({reason})",
            file=str(p),
            hint="re-run training, or --resume from an earlier good checkpoint",
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SpaceError(f"{p} is not a trionet-dsl checkpoint", file=str(p), hint=f"expected format {FORMAT}")
    return data


def require_space(
    ck: dict[str, Any], space_text: str, space_name: str, path: str | Path, kind: str | None = None
) -> None:
    """Refuse a checkpoint of another space (or of the wrong kind): the one check search, export,
    rank and resume all make."""
    if kind is not None and ck.get("kind") != kind:
        what = {"supernet": "a supernet", "arch": "a trained arch"}.get(kind, kind)
        raise SpaceError(
            f"{path} is not {what} checkpoint (it holds {ck.get('kind', 'nothing known')})",
            file=str(path),
            hint="use the supernet.pt that `trionet train SPACE` wrote"
            if kind == "supernet"
            else "use the model.pt that `trionet train ARCH` wrote",
        )
    if ck.get("space_text") != space_text:
        raise SpaceError(
            f"{path} was trained on another space than '{space_name}'",
            file=str(path),
            hint="use the checkpoint trained on this space, or the space it was trained on",
        )

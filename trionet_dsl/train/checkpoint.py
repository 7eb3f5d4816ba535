"""Checkpoints: plain dicts of tensors and JSON values, written atomically, read with
``weights_only=True`` (a checkpoint is data: loading one never runs code).

A checkpoint carries the canonical text of its space (and arch), so it can be used
without the original files and checked against the ones given on the command line.
Loading checks it before anything uses it: the fields and their types (one pydantic
schema), a SHA-256 of the weights stored at save time (flipped bytes inside tensor data
load without complaint from torch, but not past the hash), and finite weights.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write

FORMAT = "trionet-dsl/checkpoint/1"


class CheckpointSchema(BaseModel):
    """What every checkpoint holds; extra entries (optimizer state, metrics, data) are allowed.

    ``epoch`` counts finished epochs and ``step`` the optimizer steps done in the next one
    (0 at an epoch's end); checkpoints written before mid-epoch saves have no ``step``.
    """

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    format: str
    kind: str = Field(pattern="^(supernet|arch)$")
    space_text: str = Field(min_length=1)
    arch_text: str | None = None
    epoch: int = Field(ge=0)
    step: int = Field(0, ge=0)
    config: dict[str, Any]
    model: dict[str, torch.Tensor] = Field(min_length=1)
    sharing: Literal["multihead", "prefix"] = "multihead"
    optimizer: dict[str, Any] = Field(default_factory=dict)
    scheduler: dict[str, Any] = Field(default_factory=dict)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_training(self) -> CheckpointSchema:
        if self.epoch == 0 and self.step == 0:
            raise ValueError("a checkpoint is written after at least one step (epoch 0, step 0)")
        return self


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (temp file + fsync + rename), with the weights' digest."""
    data = {"format": FORMAT, **payload}
    if isinstance(payload.get("model"), dict):
        data["weights_sha256"] = weights_digest(payload["model"])
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
    check_contents(data, p)
    return data


def check_contents(data: dict[str, Any], p: Path, allow_nonfinite: bool = False) -> None:
    """Schema, weights digest and finite weights; each failure is one SpaceError naming the file."""
    bad_hint = "re-run training, or --resume from an earlier good checkpoint"
    try:
        CheckpointSchema.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"]) or "checkpoint"
        raise SpaceError(f"checkpoint {p} is damaged: '{where}': {e['msg']}", file=str(p), hint=bad_hint) from None
    digest = data.get("weights_sha256")
    if digest is not None and digest != weights_digest(data["model"]):
        raise SpaceError(
            f"checkpoint {p} is damaged: its weights do not match the digest written with them",
            file=str(p),
            hint=bad_hint,
        )
    if not allow_nonfinite:
        for key, t in data["model"].items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise SpaceError(
                    f"checkpoint {p} holds non-finite weights (NaN or inf), first in '{key}'",
                    file=str(p),
                    hint="training diverged: lower --lr, or resume from an earlier checkpoint (best.pt)",
                )


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

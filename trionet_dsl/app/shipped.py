"""The spaces and archs shipped inside the package, by name: ``trionet compile trionet_small``
works from any folder (a file of that name in the current folder wins), and ``trionet spaces``
lists them or prints one to copy and edit."""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

from trionet_dsl.lang.files import shipped_space

_KEEP = contextlib.ExitStack()  # files extracted from a zip live until the process ends
atexit.register(_KEEP.close)


def _root():
    try:
        return resources.files("trionet_dsl.spaces")
    except ModuleNotFoundError:  # a source checkout that was never installed
        return Path(__file__).resolve().parents[2] / "spaces"


def shipped_names() -> dict[str, list[str]]:
    """``{"spaces": [...], "archs": [...]}``: names as ``trionet`` commands accept them."""
    root = _root()
    spaces = sorted(e.name.removesuffix(".space") for e in root.iterdir() if e.name.endswith(".space"))
    archs_dir = root.joinpath("archs")
    archs = sorted(e.name for e in archs_dir.iterdir() if e.name.endswith(".arch")) if archs_dir.is_dir() else []
    return {"spaces": spaces, "archs": archs}


def _entry(name: str):
    return shipped_space(name.removesuffix(".space"))


def shipped_text(name: str) -> str | None:
    """The text of the shipped space ``NAME`` (or ``NAME.space``) or arch ``NAME.arch``; None if none."""
    entry = _entry(name)
    return None if entry is None else entry.read_text(encoding="utf-8")


def resolve_file(file: Path) -> Path:
    """``file`` itself if it exists (or names a folder), else the shipped space/arch of that bare name.

    ``trionet_small``, ``trionet_small.space`` and ``resnet50.arch`` name shipped files; anything
    else comes back unchanged, so the usual "cannot read" error names what the user typed.
    """
    if file.exists() or len(file.parts) != 1:
        return file
    entry = _entry(file.name)
    if entry is None:
        return file
    if isinstance(entry, Path):
        return entry
    return _KEEP.enter_context(resources.as_file(entry))  # inside a zip: a temporary copy

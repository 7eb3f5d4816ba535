"""Files -> validated IR: the front door used by the CLI and by Python users.

``load("spaces/trionet_small.space")`` gives a :class:`ResolvedSpace`; ``load_arch``
finds the arch's space by name (next to the arch file, one folder up, ``./spaces`` or
the shipped spaces) unless one is given, and checks the arch against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import find_space
from trionet_dsl.lang.ir import Arch, Space
from trionet_dsl.lang.parser import parse_document, read_text
from trionet_dsl.space.resolve import ResolvedSpace, check_arch, resolve


@dataclass(frozen=True)
class LoadedArch:
    """An arch checked against its space (blocks in space order, fixed blocks filled in)."""

    space: ResolvedSpace
    arch: Arch
    path: str = "<input>"


def compile_space_text(text: str, file: str = "<input>") -> ResolvedSpace:
    parsed = parse_document(text, file)
    if not isinstance(parsed.doc, Space):
        raise SpaceError(
            f"{file} holds an arch, not a space",
            file=file,
            hint="use load_arch / an .arch file where an architecture is meant",
        )
    return resolve(parsed.doc, parsed.source_map)


def load_space(path: str | Path) -> ResolvedSpace:
    """Parse and validate a `.space` file."""
    return compile_space_text(read_text(path), str(path))


load = load_space


def compile_arch_text(text: str, file: str = "<input>", space: ResolvedSpace | str | Path | None = None) -> LoadedArch:
    parsed = parse_document(text, file)
    if not isinstance(parsed.doc, Arch):
        raise SpaceError(
            f"{file} holds a space, not an arch", file=file, hint="an arch file starts with: arch NAME of SPACE {"
        )
    arch = parsed.doc
    if space is None:
        found = find_space(arch.space, Path(file) if file != "<input>" else None)
        rs = (
            load_space(found)
            if isinstance(found, Path)
            else compile_space_text(found.read_text(encoding="utf-8"), f"<shipped>/{arch.space}.space")
        )
    elif isinstance(space, ResolvedSpace):
        rs = space
    else:
        rs = load_space(space)
    return LoadedArch(rs, check_arch(rs, arch, parsed.source_map), file)


def load_arch(path: str | Path, space: ResolvedSpace | str | Path | None = None) -> LoadedArch:
    """Parse an `.arch` file and check it against its space."""
    return compile_arch_text(read_text(path), str(path), space)


def load_any(path: str | Path, space: ResolvedSpace | str | Path | None = None) -> ResolvedSpace | LoadedArch:
    """A space or an arch, whichever the file holds."""
    text = read_text(path)
    parsed = parse_document(text, str(path))
    if isinstance(parsed.doc, Space):
        return resolve(parsed.doc, parsed.source_map)
    return compile_arch_text(text, str(path), space)

"""Stage 1, the language: grammar -> typed IR (``parser``), IR -> canonical text (``emit``),
located errors (``errors``), files (``files``) and the editor lexer (``lexer``)."""

from trionet_dsl.lang.emit import emit, emit_arch, emit_space
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.ir import Arch, ArchBlock, Op, Space
from trionet_dsl.lang.parser import parse, parse_document, read_text

__all__ = [
    "Arch",
    "ArchBlock",
    "Op",
    "Space",
    "SpaceError",
    "emit",
    "emit_arch",
    "emit_space",
    "parse",
    "parse_document",
    "read_text",
]

"""Syntax highlighting for the ``.space`` / ``.arch`` language: a Pygments lexer.

Registered through the ``pygments.lexers`` entry point (see ``pyproject.toml``), so
``pygmentize -l trionet file.space`` and any Pygments-based tool (Sphinx, rich, ...) can use
it once the package is installed. It follows ``grammars/space.lark`` token for token: every
valid file lexes with no ``Error`` token, and the token values concatenate back to the input.

Context the grammar gives a word is kept where it matters for colour: ``conv``/``maxpool``/
``avgpool`` are stem keywords inside ``stem { ... }`` and the registered operators
(``conv``/``local``/``axial``/``global``) are ``Name.Builtin`` elsewhere; inside an
operator's parentheses a name before ``=`` is an argument (``Name.Attribute``), so ``heads=``
there is not the ``heads`` statement.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pygments.lexer import RegexLexer, bygroups, default, include, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    Whitespace,
    _TokenType,
)

from trionet_dsl.lang.keywords import BLOCK_TYPES, STATEMENT_WORDS, STEM_LAYERS
from trionet_dsl.lang.operators import REGISTRY

__all__ = ["TrioNetLexer", "source_line_tokens"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"  # the grammar's NAME (common.CNAME)

KEYWORDS = tuple(w for w in STATEMENT_WORDS if w not in STEM_LAYERS) + BLOCK_TYPES
OPERATORS = REGISTRY.names  # the built-in operators (the registry when this module is imported)


class TrioNetLexer(RegexLexer):
    """Lexer for TrioNet search spaces (``.space``) and architectures (``.arch``)."""

    name = "TrioNet"
    aliases: ClassVar[list[str]] = ["trionet", "trionet-space"]
    filenames: ClassVar[list[str]] = ["*.space", "*.arch"]
    mimetypes: ClassVar[list[str]] = ["text/x-trionet"]

    tokens: ClassVar[dict[str, list]] = {
        "common": [
            (r"\s+", Whitespace),
            (r"#[^\n]*", Comment.Single),
        ],
        "values": [
            (r"[0-9]+(?:x[0-9]+)+", Number),  # shapes: 3x224x224, 7x7
            (r"[0-9]+(?:\.[0-9]+)?x(?![0-9])", Number.Float),  # width multipliers: 0.5x
            (r"[0-9]+", Number.Integer),
            (r"\.\.", Operator),  # inclusive range: 32..128
            (r"\|", Operator),  # choice
            (r"\bstep\b", Keyword),
        ],
        "punct": [
            (r"=", Operator),
            (r"[{}();,.]", Punctuation),
        ],
        "root": [
            include("common"),
            (rf"\b(space|arch)(\s+)({_IDENT})", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (rf"\b(of)(\s+)({_IDENT})", bygroups(Keyword, Whitespace, Name.Class)),
            (rf"\b(stage)(\s+)({_IDENT})", bygroups(Keyword, Whitespace, Name.Label)),
            (rf"\b(block)(\s+)({'|'.join(BLOCK_TYPES)})\b", bygroups(Keyword, Whitespace, Keyword.Type)),
            (rf"\b(block)(\s+)({_IDENT})", bygroups(Keyword, Whitespace, Name.Class)),  # `block 0` is a number
            (r"\b(stem)(\s*)(\{)", bygroups(Keyword, Whitespace, Punctuation), "stem"),
            (rf"({_IDENT})(\.)([0-9]+)\b", bygroups(Name.Label, Punctuation, Number.Integer)),  # s1.0
            (r"\(", Punctuation, "args"),
            include("values"),
            (words(KEYWORDS, prefix=r"\b", suffix=r"\b"), Keyword),
            (words(OPERATORS, prefix=r"\b", suffix=r"\b"), Name.Builtin),
            include("punct"),
            (_IDENT, Name),
        ],
        # inside `stem { ... }`: layers `conv KxK C [stride S]`, `maxpool|avgpool KxK [stride S]`;
        # anything else ends the state (a missing `}` then costs no more than itself)
        "stem": [
            include("common"),
            (r"\}", Punctuation, "#pop"),
            (words((*STEM_LAYERS, "stride"), prefix=r"\b", suffix=r"\b"), Keyword),
            include("values"),
            (r"[;,]", Punctuation),
            default("#pop"),
        ],
        # an operator's arguments: `(kernel=3)`, `(span=7, heads=4|8)`
        "args": [
            include("common"),
            (r"\)", Punctuation, "#pop"),
            (rf"({_IDENT})(\s*)(=)", bygroups(Name.Attribute, Whitespace, Operator)),
            include("values"),
            (r",", Punctuation),
            default("#pop"),
        ],
    }

    @staticmethod
    def analyse_text(text: str) -> float:
        """A file whose first statement (after comments) is `space NAME` or `arch NAME of`."""
        if re.match(rf"(?:\s*#[^\n]*\n)*\s*(?:space\s+{_IDENT}\s*\{{|arch\s+{_IDENT}\s+of\b)", text):
            return 0.5
        return 0.0


def source_line_tokens(source: str, lineno: int) -> list[tuple[_TokenType, str]]:
    """The tokens of line ``lineno`` (1-based) of ``source``, lexed in the context of the whole file.

    Lines are counted by ``'\\n'`` only and the text is the one :meth:`SpaceError.excerpt` shows
    (trailing ``'\\r'`` dropped, a tab as one space), so the values join to exactly that line.
    Returns ``[]`` when the line does not exist.
    """
    lines = source.split("\n")
    if not 1 <= lineno <= len(lines):
        return []
    start = sum(len(line) + 1 for line in lines[: lineno - 1])
    end = start + len(lines[lineno - 1].rstrip("\r"))
    out: list[tuple[_TokenType, str]] = []
    for pos, ttype, value in TrioNetLexer().get_tokens_unprocessed(source):
        lo, hi = max(pos, start), min(pos + len(value), end)
        if lo < hi:
            out.append((ttype, value[lo - pos : hi - pos].replace("\t", " ")))
        if pos >= end:
            break
    return out

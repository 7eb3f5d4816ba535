"""The language's reserved words, in one place: the parser rejects them as names, the
operator registry as operator/argument names, the editor lexer highlights them."""

from __future__ import annotations

STATEMENT_WORDS: tuple[str, ...] = (
    "space", "arch", "input", "classes", "stem", "block", "stage", "op", "width", "heads",
    "blocks", "stride", "expansion", "conv", "maxpool", "avgpool", "of", "step",
)  # fmt: skip
"""Words that start or shape a statement; names may not be any of them."""

BLOCK_TYPES: tuple[str, ...] = ("bottleneck",)
"""Block types after ``block`` in a space's defaults."""

STEM_LAYERS: tuple[str, ...] = ("conv", "maxpool", "avgpool")
"""Layer kinds of a ``stem { }``."""

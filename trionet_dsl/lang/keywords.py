"""The language's reserved words, in one place: the parser rejects them as names, the
operator registry as operator/argument names, the editor lexer highlights them."""

from __future__ import annotations

STATEMENT_WORDS: tuple[str, ...] = (
    "space", "arch", "input", "classes", "stem", "block", "stage", "op", "width", "heads",
    "blocks", "stride", "expansion", "conv", "maxpool", "avgpool", "of", "step", "depth",
)  # fmt: skip
"""Words that start or shape a statement; names may not be any of them."""

BLOCK_TYPES: tuple[str, ...] = ("bottleneck", "basic")
"""Block types after ``block`` in a space's defaults (ResNet's Bottleneck and BasicBlock)."""

DEFAULT_EXPANSION: dict[str, int] = {"bottleneck": 4, "basic": 1}
"""A block type's expansion when ``expansion N`` is not written (as torchvision's ResNet)."""

STEM_LAYERS: tuple[str, ...] = ("conv", "maxpool", "avgpool")
"""Layer kinds of a ``stem { }``."""

"""The head-grid arithmetic of Multi-head Sharing: which weight rows a sub-operator uses.

Plain integer math, shared by the cost model (how large the supernet's operators are) and
the operators themselves (:mod:`trionet_dsl.nn.ops.heads`, which slices tensors with it and
explains the two sharing modes). For a block with widths ``{w}`` and head counts ``{h}``,
``H = max h`` and ``D = max w / h`` over the pairs where ``h`` divides ``w``; under
``"multihead"`` sharing projections store ``H * D`` rows read as an ``H x D`` grid, under
``"prefix"`` sharing ``max w`` rows.
"""

from __future__ import annotations

import math
from typing import Any

MODES = ("multihead", "prefix")


def check_mode(mode: str) -> str:
    """Reject unknown sharing modes early (a typo would silently pick a default otherwise)."""
    if mode not in MODES:
        raise ValueError(f"sharing must be one of {MODES}, not {mode!r}")
    return mode


def grid_dims(widths: tuple[int, ...], heads: tuple[int, ...]) -> tuple[int, int]:
    """(H, D): most heads and widest head over every valid (w, h) of a block."""
    pairs = [(w, h) for w in widths for h in heads if w % h == 0]
    if not pairs:
        raise ValueError(f"no head count in {tuple(heads)} divides a width in {tuple(widths)}")
    return max(heads), max(w // h for w, h in pairs)


def stored_rows(widths: tuple[int, ...], heads: tuple[int, ...], mode: str) -> int:
    """Output rows a projection stores: H*D for multihead sharing, max width for prefix."""
    if check_mode(mode) == "multihead":
        h, d = grid_dims(widths, heads)
        return h * d
    return max(widths)


def grid_index(grid: tuple[int, int], width: int, heads: int) -> list[int]:
    """Stored grid rows (head-major) that the ``width`` outputs of sub-operator (width, heads) occupy."""
    big_d = grid[1]
    d = width // heads
    return [i * big_d + j for i in range(heads) for j in range(d)]


def split_halves(d: int) -> tuple[int, int]:
    """SASA's row/column halves of a head's channels: ceil(d/2) row, floor(d/2) column."""
    return math.ceil(d / 2), d // 2


def output_rows(op: Any, *, widths: tuple[int, ...], heads: tuple[int, ...], sharing: str) -> int:
    """Outputs of a block's super operator that the BN after it and the 1x1 expand address.

    The registry's default: the head grid (``stored_rows``) for an operator with head
    choices, the widest width (plain channels) otherwise.
    """
    return stored_rows(widths, heads, sharing) if heads else max(widths)

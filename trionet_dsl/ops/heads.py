"""How width and heads combine in attention weights: Multi-head Sharing vs channel prefix.

An attention operator of a block may run with any width ``w`` of the block and any head
count ``h`` of the operator; its heads have ``d = w / h`` channels.

* **Multi-head Sharing** (TrioNet, Pi et al. 2021; ``"multihead"``, the default): the
  q/k/v projections' output channels form a grid of ``H`` heads x ``D`` channels, with
  ``H`` the largest head count and ``D`` the largest ``w / h`` of the block. Head ``i`` of
  every sub-operator is row ``i`` of the grid — its own slice of the projections and its
  own positional embeddings — and a sub-operator ``(w, h)`` takes heads ``0..h-1`` and the
  leading ``d`` channels of each. A head therefore means the same thing in every
  sub-network that has it; narrowing never cuts across head boundaries.
* **Channel prefix** (``"prefix"``, the baseline): the projections are flat (largest
  width ``W`` rows); ``(w, h)`` takes the leading ``w`` rows and splits them into ``h``
  heads, so head ``i`` of ``(64, 8)`` (channels 8i..8i+7) and of ``(64, 4)`` (16i..16i+15)
  read different weights.

The operator's output channels are head-major in both modes: channel ``c`` is head
``c // d``, head channel ``c % d``.
"""

from __future__ import annotations

import math

import torch

MODES = ("multihead", "prefix")


def grid_dims(widths: tuple[int, ...], heads: tuple[int, ...]) -> tuple[int, int]:
    """(H, D): most heads and widest head over every valid (w, h) of a block."""
    pairs = [(w, h) for w in widths for h in heads if w % h == 0]
    if not pairs:
        raise ValueError(f"no head count in {heads} divides a width in {widths}")
    return max(heads), max(w // h for w, h in pairs)


def stored_rows(widths: tuple[int, ...], heads: tuple[int, ...], mode: str) -> int:
    """Output rows a projection stores: H*D for multihead sharing, max width for prefix."""
    if mode == "multihead":
        h, d = grid_dims(widths, heads)
        return h * d
    return max(widths)


def slice_rows(weight: torch.Tensor, mode: str, grid: tuple[int, int], width: int, heads: int) -> torch.Tensor:
    """The rows of a stored (rows, ...) tensor that sub-operator (width, heads) uses, head-major."""
    d = width // heads
    if mode == "multihead":
        big_h, big_d = grid
        return weight.reshape(big_h, big_d, *weight.shape[1:])[:heads, :d].reshape(width, *weight.shape[1:])
    return weight[:width]


def split_halves(d: int) -> tuple[int, int]:
    """SASA's row/column halves of a head's channels: ceil(d/2) row, floor(d/2) column."""
    return math.ceil(d / 2), d // 2

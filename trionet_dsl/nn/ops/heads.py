"""How width and heads combine in attention weights: Multi-head Sharing vs channel prefix.

An attention operator of a block may run with any width ``w`` of the block and any head
count ``h`` of the operator; its heads have ``d = w / h`` channels (``h`` must divide ``w``).
Let ``H = max(head_choices)`` and ``D = max(w / h)`` over the valid ``(w, h)`` pairs.

* **Multi-head Sharing** (TrioNet, Pi et al. 2021; ``"multihead"``, the default): every
  q/k/v projection stores ``H * D`` output rows read as an ``H x D`` grid (row ``r`` of the
  weight is head ``r // D``, head channel ``r % D``). Head ``i`` of *every* sub-operator is
  grid row ``i`` — its own slice of the projections and its own positional embeddings
  (stored per head, ``(H, D_part, offsets)``) — and sub-operator ``(w, h)`` uses heads
  ``0..h-1`` and the leading ``d = w / h`` channels of each. A head therefore means the same
  thing in every sub-network that has it; narrowing never cuts across head boundaries.
  Slicing is ``weight.reshape(H, D, ...)[:h, :d].reshape(w, ...)``.
* **Channel prefix** (``"prefix"``, the baseline): projections are flat (``W = max(widths)``
  rows); ``(w, h)`` takes the leading ``w`` rows and splits them into ``h`` heads of ``d``,
  so head ``i`` of ``(64, 8)`` (rows ``8i..8i+7``) and of ``(64, 4)`` (rows ``16i..16i+15``)
  read different weights. Positional embeddings are flat too (``(W, offsets)``), sliced by
  the same prefix and reshaped to ``(h, d, offsets)``.

In both modes the operator's output channels are head-major: channel ``c`` is head
``c // d``, head channel ``c % d`` (``w`` channels in all). An operator whose *input* is
another attention layer's output (axial's width layer) slices its input columns the same
way, so each input channel keeps its meaning.

The same holds *after* the operator. Under Multi-head Sharing output channel 5 is (head 1,
channel 1) when ``d = 4`` but (head 0, channel 5) when ``d = 8``, so the layers that read
the operator's output — the BN after it and the bottleneck's 1x1 expand — address it by
grid position, not by channel number: ``grid_index(grid, w, h)`` gives the stored rows a
sub-operator's outputs occupy, and the supernet reads BN entries and 1x1 columns at those
positions (``H * D`` of them stored). With prefix sharing channel ``c`` is always row
``c``. Measured before this was done (``benchmarks/sharing_comparison.py``): Multi-head
Sharing trailed prefix sharing by 13 points of one-shot accuracy, because the 1x1 expand
saw a different channel order for every head count.

The integer arithmetic of the grid (``grid_dims``, ``stored_rows``, ``grid_index``, ...) is
in :mod:`trionet_dsl.space.sharing` (torch-free: the cost model needs it) and re-exported
here; this module adds what slices tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, TypeVar

import torch

from trionet_dsl.space.sharing import MODES, check_mode, grid_dims, grid_index, split_halves, stored_rows

__all__ = [
    "MODES",
    "GridOutputs",
    "Take",
    "check_mode",
    "check_sub",
    "grid_dims",
    "grid_index",
    "output_index",
    "row_index",
    "slice_rows",
    "split_halves",
    "stored_rows",
]


def check_sub(mode: str, grid: tuple[int, int], max_width: int, width: int, heads: int) -> int:
    """Per-head dim ``d`` of sub-operator (width, heads), after checking the stored weights hold it."""
    if heads < 1 or width % heads:
        raise ValueError(f"{heads} heads do not divide width {width}")
    d = width // heads
    big_h, big_d = grid
    if mode == "multihead" and (heads > big_h or d > big_d):
        raise ValueError(f"(width={width}, heads={heads}) needs {heads} heads of {d}; the grid is {big_h} x {big_d}")
    if mode == "prefix" and width > max_width:
        raise ValueError(f"width {width} exceeds the largest width {max_width}")
    return d


def slice_rows(weight: torch.Tensor, mode: str, grid: tuple[int, int], width: int, heads: int) -> torch.Tensor:
    """The rows of a stored ``(rows, ...)`` tensor that sub-operator (width, heads) uses, head-major."""
    d = width // heads
    if mode == "multihead":
        big_h, big_d = grid
        return weight.reshape(big_h, big_d, *weight.shape[1:])[:heads, :d].reshape(width, *weight.shape[1:])
    return weight[:width]


def row_index(mode: str, grid: tuple[int, int], width: int, heads: int) -> list[int]:
    """Stored rows sub-operator (width, heads) reads, head-major: what ``slice_rows`` takes."""
    return grid_index(grid, width, heads) if mode == "multihead" else list(range(width))


class Take:
    """How one sub-operator reads a stored 2-D weight ``(rows, cols)``, worked out once (per
    sub-operator and device, see ``cached``) so that a forward pass reads it with as few ops as
    possible — each op is a kernel forward and an autograd node backward, and at CPU batch sizes
    their fixed cost was most of the supernet's overhead over its extracted model.

    Leading rows and columns: a view (no copy; none at all when they are the whole tensor). Rows at
    grid positions over leading columns: one ``index_select`` of rows. Anything else (the axial
    width layer's grid-indexed columns): one ``index_select`` of the flat entries. Gradients reach
    exactly the entries read, as with slicing; values and order are ``slice_rows``'s.
    """

    __slots__ = ("cols", "flat", "row_idx", "rows")

    def __init__(self, rows: list[int], cols: list[int], stored_cols: int, device: torch.device | None = None) -> None:
        self.rows, self.cols = len(rows), len(cols)
        lead_rows, lead_cols = rows == list(range(len(rows))), cols == list(range(len(cols)))
        r = torch.tensor(rows, dtype=torch.long, device=device)
        self.row_idx = None if lead_rows or not lead_cols else r
        self.flat = None
        if not lead_cols:
            c = torch.tensor(cols, dtype=torch.long, device=device)
            self.flat = (r[:, None] * stored_cols + c[None, :]).reshape(-1)

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.flat is not None:
            return t.reshape(-1).index_select(0, self.flat).view(self.rows, self.cols)
        if self.row_idx is not None:
            t = t.index_select(0, self.row_idx)
        elif self.rows < t.shape[0]:
            t = t[: self.rows]
        return t[:, : self.cols] if self.cols < t.shape[1] else t


_P = TypeVar("_P")


def cached(module: object, key: Hashable, build: Callable[[], _P]) -> _P:
    """``build()``, memoised on ``module`` under ``key`` (which includes the device): the index
    tensors and checks a sub-operator needs are made once, not at every forward. Derived data, not
    state: it is not in the ``state_dict`` and is rebuilt for another device."""
    cache = module.__dict__.setdefault("_plan_cache", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def output_index(
    mode: str, grid: tuple[int, int], width: int, heads: int, device: torch.device | None = None
) -> torch.Tensor | None:
    """Where the layers after the operator read its outputs: ``grid_index`` under Multi-head
    Sharing, ``None`` (the leading ``width`` entries) for prefix sharing or when they coincide."""
    if mode != "multihead":
        return None
    idx = grid_index(grid, width, heads)
    if idx == list(range(width)):
        return None
    return torch.tensor(idx, dtype=torch.long, device=device)


class GridOutputs:
    """Mixin for super attention operators (which set ``widths``, ``head_choices``, ``sharing``
    and ``grid``): where the layers after the operator find each of its outputs."""

    widths: tuple[int, ...]
    head_choices: tuple[int, ...]
    sharing: str
    grid: tuple[int, int]

    if TYPE_CHECKING:  # from nn.Module, the users' other base (declared here only for the type checker)

        def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    @property
    def output_rows(self) -> int:
        """Output positions the layers after this operator store entries for."""
        return stored_rows(self.widths, self.head_choices, self.sharing)

    def output_index(self, width: int, heads: int) -> torch.Tensor | None:
        """Positions of sub-operator (width, heads)'s outputs among ``output_rows`` (None: the leading ``width``)."""
        device = next(self.parameters()).device
        cache = self.__dict__.setdefault("_index_cache", {})  # per instance, rebuilt per device; not state
        key = (width, heads, device)
        if key not in cache:
            cache[key] = output_index(self.sharing, self.grid, width, heads, device)
        return cache[key]

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
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import torch

from trionet_dsl.space.sharing import MODES, check_mode, grid_dims, grid_index, split_halves, stored_rows

__all__ = [
    "MODES",
    "Axis",
    "GridOutputs",
    "Take",
    "check_mode",
    "check_sub",
    "grid_dims",
    "grid_index",
    "index_axis",
    "lead",
    "output_index",
    "row_axis",
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


class Axis(NamedTuple):
    """Which entries of one stored axis a sub-operator reads: the leading ``size`` of each of the
    first ``blocks`` blocks of ``stride`` entries (``grid_index``'s head-major order). Leading
    entries are one block (``blocks == 1``)."""

    stride: int
    blocks: int
    size: int

    @property
    def total(self) -> int:
        return self.blocks * self.size

    @property
    def leading(self) -> bool:
        return self.blocks == 1 or self.size == self.stride


def lead(n: int) -> Axis:
    """The leading ``n`` entries."""
    return Axis(n, 1, n)


def row_axis(mode: str, grid: tuple[int, int], width: int, heads: int) -> Axis:
    """Stored rows sub-operator (width, heads) reads, head-major (what ``slice_rows`` takes):
    heads ``0..h-1`` of ``D`` rows, the leading ``d`` of each; prefix sharing: the leading ``width``."""
    return Axis(grid[1], heads, width // heads) if mode == "multihead" else lead(width)


def index_axis(index: list[int]) -> Axis | None:
    """The ``Axis`` whose entries are ``index``, in order; None when it is not of that form."""
    if not index:
        return None
    size = next((k for k, i in enumerate(index) if i != k), len(index))
    stride = index[size] if size < len(index) else size
    blocks = len(index) // size if size else 0
    if size == 0 or blocks * size != len(index) or stride < size:
        return None
    axis = Axis(stride, blocks, size)
    return axis if index == [b * stride + j for b in range(blocks) for j in range(size)] else None


class Take:
    """How one sub-operator reads a stored 2-D weight ``(rows, cols)``, worked out once per
    sub-operator (see ``cached``) so that a forward pass reads it with as few ops as possible: at
    CPU batch sizes the fixed cost of each op (a kernel forward, an autograd node backward) was
    most of the supernet's overhead over its extracted model.

    Leading rows and columns: a view (none at all when they are the whole tensor). Rows or columns
    at grid positions: one strided view of the blocks (``as_strided``) and one copy into a dense
    ``(rows, cols)`` tensor. Measured on CPU against ``index_select`` of the same entries: equal for
    ``trionet_small``'s weights, 10x faster forward+backward at ``trionet_r50``'s (1024 x 512),
    whose ``index_add_`` backward runs element by element. Gradients reach exactly the entries
    read, as with slicing; values and order are ``slice_rows``'s.
    """

    __slots__ = ("cols", "rows")

    def __init__(self, rows: Axis, cols: Axis) -> None:
        self.rows, self.cols = rows, cols

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        r, c = self.rows, self.cols
        if r.leading and c.leading:
            if r.total < t.shape[0]:
                t = t[: r.total]
            return t[:, : c.total] if c.total < t.shape[1] else t
        return self._blocks(t).reshape(r.total, c.total)

    def _blocks(self, t: torch.Tensor) -> torch.Tensor:
        r, c = self.rows, self.cols
        s0, s1 = t.stride()
        return t.as_strided((r.blocks, r.size, c.blocks, c.size), (r.stride * s0, s0, c.stride * s1, s1))

    def stack(self, ts: list[torch.Tensor]) -> torch.Tensor:
        """The entries of several same-shaped stored tensors, one read's rows after another's, in one
        copy: ``torch.cat([self(t) for t in ts])`` (q/k/v before their one 1x1 projection), without
        first copying each read and then all of them again."""
        r, c = self.rows, self.cols
        if r.leading and c.leading:
            return torch.cat([self(t) for t in ts], 0)
        return torch.stack([self._blocks(t) for t in ts]).reshape(len(ts) * r.total, c.total)


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

"""Stand-alone local self-attention (SASA: Ramachandran et al. 2019, "Stand-Alone
Self-Attention in Vision Models"), multi-head, with relative position embeddings.

Pixel ``(i, j)`` attends to its ``K x K`` neighbourhood ``N(i, j)`` (``K`` = span, zero
padding ``K // 2``; padded positions are masked out of the softmax, not attended as
zeros). Per head, with ``q = Wq x``, ``k = Wk x``, ``v = Wv x`` (1x1, no bias):

    y_ij = sum_{(a,b) in N(i,j)} softmax_ab( q_ij . k_ab / sqrt(d) + q_ij . r_{a-i, b-j} ) v_ab

``r`` has SASA's row/column halves: the first ``ceil(d/2)`` channels of ``q`` meet a
row-offset embedding ``r_row[a-i]``, the other ``floor(d/2)`` a column-offset embedding
``r_col[b-j]``. The content term is scaled by ``1/sqrt(d)`` (SASA writes no scale; we add
it so logits do not grow with head width across sub-networks). A stride ``s > 1`` is an
``s x s`` average pool after the attention (ceil mode), as SASA does.

Multiply-adds at input ``H x W`` with ``C`` input and ``w`` output channels:
``HW (3 C w  +  2 K^2 w  +  K w)`` — projections, content logits and weighted sum
(``K^2 w`` each), and the two relative terms (``K * ceil(d/2) + K * floor(d/2)`` per head).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.ops.heads import grid_dims, slice_rows, split_halves, stored_rows


def local_attention(x: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor,
                    rel_row: torch.Tensor, rel_col: torch.Tensor, heads: int, span: int,
                    stride: int) -> torch.Tensor:
    """Functional SASA: x (N, C, H, W); wq/wk/wv (w, C); rel_row (h, ceil(d/2), K); rel_col (h, floor(d/2), K)."""
    n, _, height, width = x.shape
    w = wq.shape[0]
    d = w // heads
    dr = rel_row.shape[1]
    kk = span * span
    hw = height * width
    qkv = F.conv2d(x, torch.cat([wq, wk, wv], 0)[:, :, None, None])
    q, k, v = qkv.split([w, w, w], dim=1)
    pad = span // 2
    # broadcast-multiply-and-sum beats einsum here: einsum lowers to many tiny matmuls
    q = q.reshape(n, heads, d, 1, hw)
    k = F.unfold(k, span, padding=pad).reshape(n, heads, d, kk, hw)
    v = F.unfold(v, span, padding=pad).reshape(n, heads, d, kk, hw)
    logits = (q * k).sum(2) * (1.0 / math.sqrt(d))
    row = torch.einsum("nhdl,hda->nhal", q[:, :, :dr, 0], rel_row)
    col = torch.einsum("nhdl,hdb->nhbl", q[:, :, dr:, 0], rel_col)
    rel = (row[:, :, :, None, :] + col[:, :, None, :, :]).reshape(n, heads, kk, hw)
    valid = F.unfold(torch.ones(1, 1, height, width, dtype=x.dtype, device=x.device), span, padding=pad)
    logits = (logits + rel).masked_fill(valid.reshape(1, 1, kk, hw) < 0.5, float("-inf"))
    attn = torch.softmax(logits, dim=2)
    out = (attn[:, :, None] * v).sum(3).reshape(n, w, height, width)
    if stride > 1:
        out = F.avg_pool2d(out, stride, stride, ceil_mode=True)
    return out


def _init_proj(t: torch.Tensor, fan_in: int) -> None:
    nn.init.normal_(t, std=1.0 / math.sqrt(fan_in))


def _init_rel(t: torch.Tensor) -> None:
    # small: position starts as a gentle bias and is learned, content dominates at init
    nn.init.normal_(t, std=0.02)


class LocalAttention2d(nn.Module):
    """A plain SASA layer of fixed size (what extraction and ``build`` produce)."""

    def __init__(self, in_channels: int, width: int, heads: int, span: int, stride: int = 1) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        self.heads, self.span, self.stride = heads, span, stride
        dr, dc = split_halves(width // heads)
        self.wq = nn.Parameter(torch.empty(width, in_channels))
        self.wk = nn.Parameter(torch.empty(width, in_channels))
        self.wv = nn.Parameter(torch.empty(width, in_channels))
        self.rel_row = nn.Parameter(torch.empty(heads, dr, span))
        self.rel_col = nn.Parameter(torch.empty(heads, dc, span))
        for p in (self.wq, self.wk, self.wv):
            _init_proj(p, in_channels)
        _init_rel(self.rel_row)
        _init_rel(self.rel_col)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_attention(x, self.wq, self.wk, self.wv, self.rel_row, self.rel_col, self.heads, self.span,
                               self.stride)

    @staticmethod
    def param_count(in_channels: int, width: int, heads: int, span: int) -> int:
        return 3 * width * in_channels + width * span

    @staticmethod
    def macs(height: int, width_px: int, in_channels: int, width: int, heads: int, span: int) -> int:
        hw = height * width_px
        return hw * (3 * in_channels * width + 2 * span * span * width + span * width)


class SuperLocalAttention(nn.Module):
    """Every (width, heads) of a block's local operator, sharing weights (see ``ops.heads``)."""

    def __init__(self, in_max: int, widths: tuple[int, ...], heads: tuple[int, ...], span: int, stride: int = 1,
                 sharing: str = "multihead") -> None:
        super().__init__()
        self.widths, self.head_choices, self.span, self.stride, self.sharing = widths, heads, span, stride, sharing
        self.grid = grid_dims(widths, heads)
        rows = stored_rows(widths, heads, sharing)
        self.wq = nn.Parameter(torch.empty(rows, in_max))
        self.wk = nn.Parameter(torch.empty(rows, in_max))
        self.wv = nn.Parameter(torch.empty(rows, in_max))
        for p in (self.wq, self.wk, self.wv):
            _init_proj(p, in_max)
        if sharing == "multihead":
            big_h, big_d = self.grid
            dr, dc = split_halves(big_d)
            self.rel_row = nn.Parameter(torch.empty(big_h, dr, span))
            self.rel_col = nn.Parameter(torch.empty(big_h, dc, span))
            _init_rel(self.rel_row)
            _init_rel(self.rel_col)
        else:
            self.rel = nn.Parameter(torch.empty(max(widths), span))
            _init_rel(self.rel)

    def weights(self, in_channels: int, width: int, heads: int) -> dict[str, torch.Tensor]:
        """The (views of the) tensors sub-operator (width, heads) computes with."""
        d = width // heads
        dr, dc = split_halves(d)
        out = {n: slice_rows(getattr(self, n), self.sharing, self.grid, width, heads)[:, :in_channels]
               for n in ("wq", "wk", "wv")}
        if self.sharing == "multihead":
            out["rel_row"] = self.rel_row[:heads, :dr]
            out["rel_col"] = self.rel_col[:heads, :dc]
        else:
            r = self.rel[:width].reshape(heads, d, self.span)
            out["rel_row"], out["rel_col"] = r[:, :dr], r[:, dr:]
        return out

    def forward(self, x: torch.Tensor, width: int, heads: int) -> torch.Tensor:
        t = self.weights(x.shape[1], width, heads)
        return local_attention(x, t["wq"], t["wk"], t["wv"], t["rel_row"], t["rel_col"], heads, self.span,
                               self.stride)

    def extract(self, width: int, heads: int, in_channels: int | None = None) -> LocalAttention2d:
        cin = width if in_channels is None else in_channels
        m = LocalAttention2d(cin, width, heads, self.span, self.stride)
        with torch.no_grad():
            for name, t in self.weights(cin, width, heads).items():
                getattr(m, name).copy_(t)
        return m

    def head_weights(self, i: int, width: int, heads: int) -> dict[str, torch.Tensor]:
        """What head ``i`` of sub-operator (width, heads) reads (for checking Multi-head Sharing)."""
        d = width // heads
        t = self.weights(self.wq.shape[1], width, heads)
        return {"wq": t["wq"][i * d:(i + 1) * d], "wk": t["wk"][i * d:(i + 1) * d],
                "wv": t["wv"][i * d:(i + 1) * d], "rel_row": t["rel_row"][i], "rel_col": t["rel_col"][i]}

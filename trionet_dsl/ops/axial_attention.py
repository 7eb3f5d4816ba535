"""Position-sensitive axial self-attention (Wang et al. 2020, "Axial-DeepLab"): attention
along the height axis, then along the width axis, each a multi-head layer of its own.

Along an axis of length ``L``, per head, for output position ``o``:

    y_o = sum_p softmax_p( (q_o . k_p + q_o . rq_{p-o} + k_p . rk_{p-o}) / sqrt(d) ) (v_p + rv_{p-o})

with learned relative embeddings ``rq, rk, rv`` on query, key and value (Axial-DeepLab's
position sensitivity). Global over the axis unless a span ``m`` restricts ``p`` to
``|p - o| <= m // 2`` (masked). Embeddings are allocated for the longest axis the layer is
built for (``max_len``; ``2 max_len - 1`` offsets); a shorter axis uses the central ones.
Deviations from the paper, for a simple shareable operator: q/k have as many channels as v
(Axial-DeepLab halves them), logits are scaled by ``1/sqrt(d)`` instead of batch-normalised.
A stride ``s > 1`` is an ``s x s`` average pool after both layers (ceil mode).

Multiply-adds of one layer along an axis of length ``L`` of an ``H x W`` map, ``C`` in /
``w`` out channels: ``HW (3 C w + 5 L w)`` — projections, then ``L`` keys per output for
each of q.k, q.rq, k.rk, attn.v and attn.rv. The full ``L x L`` logits are computed even
with a span (masked), and counted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.ops.heads import grid_dims, slice_rows, stored_rows


def axial_layer(x: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor, rq: torch.Tensor,
                rk: torch.Tensor, rv: torch.Tensor, heads: int, span: int) -> torch.Tensor:
    """Attention along dim 2 (height) of x (N, C, L, M); r* are (h, d, 2*max_len - 1); span 0 = global."""
    n, _, length, other = x.shape
    w = wq.shape[0]
    d = w // heads
    max_len = (rq.shape[2] + 1) // 2
    if length > max_len:
        raise ValueError(f"axial attention built for axes up to {max_len} got an axis of {length}")
    qkv = F.conv2d(x, torch.cat([wq, wk, wv], 0)[:, :, None, None]).reshape(n, 3, heads, d, length, other)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    pos = torch.arange(length, device=x.device)
    offset = pos[None, :] - pos[:, None]  # [o, p] = p - o
    idx = offset + (max_len - 1)
    eq, ek, ev = rq[:, :, idx], rk[:, :, idx], rv[:, :, idx]  # (h, d, L_o, L_p)
    logits = (torch.einsum("nhdom,nhdpm->nhopm", q, k)
              + torch.einsum("nhdom,hdop->nhopm", q, eq)
              + torch.einsum("nhdpm,hdop->nhopm", k, ek)) * (1.0 / math.sqrt(d))
    if span > 0:
        far = offset.abs() > span // 2
        logits = logits.masked_fill(far[None, None, :, :, None], float("-inf"))
    attn = torch.softmax(logits, dim=3)
    out = torch.einsum("nhopm,nhdpm->nhdom", attn, v) + torch.einsum("nhopm,hdop->nhdom", attn, ev)
    return out.reshape(n, w, length, other)


def axial_attention(x: torch.Tensor, h_w: list[torch.Tensor], w_w: list[torch.Tensor], heads: int, span: int,
                    stride: int) -> torch.Tensor:
    """Height layer then width layer; ``h_w``/``w_w`` = [wq, wk, wv, rq, rk, rv] of each."""
    y = axial_layer(x, h_w[0], h_w[1], h_w[2], h_w[3], h_w[4], h_w[5], heads, span)
    y = axial_layer(y.transpose(2, 3), w_w[0], w_w[1], w_w[2], w_w[3], w_w[4], w_w[5], heads, span).transpose(2, 3)
    if stride > 1:
        y = F.avg_pool2d(y, stride, stride, ceil_mode=True)
    return y


_NAMES = ("wq", "wk", "wv", "rq", "rk", "rv")


def _init(p: torch.Tensor, fan_in: int, is_rel: bool) -> None:
    nn.init.normal_(p, std=0.02 if is_rel else 1.0 / math.sqrt(fan_in))


class AxialAttention2d(nn.Module):
    """A plain axial-attention operator of fixed size (height layer ``h_*``, width layer ``w_*``)."""

    def __init__(self, in_channels: int, width: int, heads: int, max_len: int, span: int = 0,
                 stride: int = 1) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        self.heads, self.span, self.stride, self.max_len = heads, span, stride, max_len
        d, offsets = width // heads, 2 * max_len - 1
        for prefix, cin in (("h_", in_channels), ("w_", width)):
            for name in _NAMES:
                shape = (heads, d, offsets) if name.startswith("r") else (width, cin)
                p = nn.Parameter(torch.empty(*shape))
                _init(p, cin, name.startswith("r"))
                setattr(self, prefix + name, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return axial_attention(x, [self.h_wq, self.h_wk, self.h_wv, self.h_rq, self.h_rk, self.h_rv],
                               [self.w_wq, self.w_wk, self.w_wv, self.w_rq, self.w_rk, self.w_rv],
                               self.heads, self.span, self.stride)

    @staticmethod
    def param_count(in_channels: int, width: int, heads: int, max_len: int) -> int:
        rel = 3 * width * (2 * max_len - 1)
        return 3 * width * in_channels + rel + 3 * width * width + rel

    @staticmethod
    def macs(height: int, width_px: int, in_channels: int, width: int, heads: int) -> int:
        hw = height * width_px
        return hw * (3 * in_channels * width + 5 * height * width) + hw * (3 * width * width + 5 * width_px * width)


class SuperAxialAttention(nn.Module):
    """Every (width, heads) of a block's axial operator, sharing weights (see ``ops.heads``)."""

    def __init__(self, in_max: int, widths: tuple[int, ...], heads: tuple[int, ...], max_len: int, span: int = 0,
                 stride: int = 1, sharing: str = "multihead") -> None:
        super().__init__()
        self.widths, self.head_choices, self.max_len = widths, heads, max_len
        self.span, self.stride, self.sharing = span, stride, sharing
        self.grid = grid_dims(widths, heads)
        rows = stored_rows(widths, heads, sharing)
        offsets = 2 * max_len - 1
        for prefix, cin in (("h_", in_max), ("w_", rows)):
            for name in _NAMES:
                is_rel = name.startswith("r")
                shape = (rows, offsets) if is_rel else (rows, cin)
                p = nn.Parameter(torch.empty(*shape))
                _init(p, cin, is_rel)
                setattr(self, prefix + name, p)

    def _layer(self, prefix: str, in_channels: int, width: int, heads: int) -> list[torch.Tensor]:
        d = width // heads
        out = []
        for name in _NAMES:
            t = slice_rows(getattr(self, prefix + name), self.sharing, self.grid, width, heads)
            if name.startswith("r"):
                t = t.reshape(heads, d, -1)
            elif prefix == "w_":  # its input is the height layer's head-major output: same grid
                t = slice_rows(t.t(), self.sharing, self.grid, width, heads).t()
            else:
                t = t[:, :in_channels]
            out.append(t)
        return out

    def weights(self, in_channels: int, width: int, heads: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self._layer("h_", in_channels, width, heads), self._layer("w_", width, width, heads)

    def forward(self, x: torch.Tensor, width: int, heads: int) -> torch.Tensor:
        hw, ww = self.weights(x.shape[1], width, heads)
        return axial_attention(x, hw, ww, heads, self.span, self.stride)

    def extract(self, width: int, heads: int, in_channels: int | None = None) -> AxialAttention2d:
        cin = width if in_channels is None else in_channels
        m = AxialAttention2d(cin, width, heads, self.max_len, self.span, self.stride)
        hw, ww = self.weights(cin, width, heads)
        with torch.no_grad():
            for prefix, ts in (("h_", hw), ("w_", ww)):
                for name, t in zip(_NAMES, ts):
                    getattr(m, prefix + name).copy_(t)
        return m

    def head_weights(self, i: int, width: int, heads: int) -> dict[str, torch.Tensor]:
        """What head ``i`` of sub-operator (width, heads) reads in the height layer."""
        d = width // heads
        hw, _ = self.weights(self.h_wq.shape[1], width, heads)
        return {n: (t[i] if n.startswith("r") else t[i * d:(i + 1) * d]) for n, t in zip(_NAMES, hw)}

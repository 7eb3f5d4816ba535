"""Position-sensitive axial self-attention (Wang et al. 2020, "Axial-DeepLab"): attention
along the height axis, then along the width axis, each a multi-head layer with its own
q/k/v projections and positional embeddings (the width layer maps ``w -> w`` channels).

Along an axis of length ``L``, per head, for output position ``o``:

    y_o = sum_p softmax_p( q_o . k_p + q_o . rq_{p-o} + k_p . rk_{p-o} ) (v_p + rv_{p-o})

with learned relative embeddings ``rq, rk, rv`` (Axial-DeepLab's position sensitivity on
query, key and value). Global over the axis unless ``span = m > 0`` restricts ``p`` to
``|p - o| <= m // 2`` (the rest masked with ``-inf``). Embeddings are allocated for the
longest axis the layer is built for, ``max_len`` (``2 max_len - 1`` offsets); a run-time
axis ``L <= max_len`` uses the central ``2L - 1``; ``L > max_len`` raises ``ValueError``.
A stride ``s > 1`` is an ``s x s`` average pool after both layers (``ceil_mode=True``).

Deviations from the paper, for a simple shareable operator: q/k have as many channels as
v (Axial-DeepLab halves them), and there is no batch norm on the logits or outputs. The
logits are not scaled; as in ``local_attention`` the ``1/sqrt(d)`` temperature is in the
init (``Wq`` std ``1/sqrt(C_in d)``, ``Wk``/``Wv`` std ``1/sqrt(C_in)``), and each
embedding is scaled so its logit term has about unit variance at init: ``rq`` std 1,
``rk`` std ``1/sqrt(d)``; ``rv`` std ``1/sqrt(d)`` keeps it small next to ``v``.

Multiply-adds (MACs), input ``N x C_in x H x W``, ``w`` output channels (any ``h``)::

    N * H * W * (3 * C_in * w + 5 * H * w)      height layer
  + N * H * W * (3 * w * w    + 5 * W * w)      width layer

projections, then ``L`` keys per output for each of ``q.k``, ``q.rq``, ``k.rk``,
``attn.v`` and ``attn.rv``. The full ``L x L`` logits are computed even with a span
(masked), so the span does not change the count; pooling is not counted.

Parameters of the plain operator: ``3 C_in w + 3 w^2 + 6 w (2 max_len - 1)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.nn.ops.heads import GridOutputs, check_mode, check_sub, grid_dims, slice_rows, stored_rows
from trionet_dsl.space.op_costs import axial_attention_macs, axial_attention_params

_NAMES = ("wq", "wk", "wv", "rq", "rk", "rv")


def relative_index(max_len: int) -> torch.Tensor:
    """(max_len, max_len) table ``[o, p] = p - o + max_len - 1``; its top-left ``L x L`` is the central slice."""
    pos = torch.arange(max_len)
    return pos[None, :] - pos[:, None] + (max_len - 1)


def axial_layer(
    x: torch.Tensor,
    wq: torch.Tensor,
    wk: torch.Tensor,
    wv: torch.Tensor,
    rq: torch.Tensor,
    rk: torch.Tensor,
    rv: torch.Tensor,
    heads: int,
    span: int,
    rel_index: torch.Tensor,
) -> torch.Tensor:
    """Attention along dim 2 of x (N, C, L, M): w/wk/wv (w, C); r* (h, d, 2 max_len - 1); span 0 = global."""
    n, _, length, other = x.shape
    max_len = rel_index.shape[0]
    if length > max_len:
        raise ValueError(
            f"axial attention built for axes up to max_len={max_len} got an axis of length "
            f"{length}; build it with a larger max_len"
        )
    w = wq.shape[0]
    d = w // heads
    b = n * other
    qkv = F.conv2d(x, torch.cat([wq, wk, wv], 0)[:, :, None, None])  # (N, 3w, L, M)
    # -> (3, N*M, h, L, d): each line along the axis is one batch entry of the matmuls below
    qkv = qkv.reshape(n, 3, heads, d, length, other).permute(1, 0, 5, 2, 4, 3).reshape(3, b, heads, length, d)
    q, k, v = qkv.unbind(0)  # unbind's backward stacks; indexing's would zero-fill full-size grads
    idx = rel_index[:length, :length]
    eq, ek, ev = rq[:, :, idx], rk[:, :, idx], rv[:, :, idx]  # (h, d, L_o, L_p)
    logits = (
        torch.matmul(q, k.transpose(2, 3))
        + torch.einsum("bhod,hdop->bhop", q, eq)
        + torch.einsum("bhpd,hdop->bhop", k, ek)
    )
    if span > 0:
        far = (idx - (max_len - 1)).abs() > span // 2
        logits = logits.masked_fill(far, float("-inf"))
    attn = torch.softmax(logits, dim=3)
    out = torch.matmul(attn, v) + torch.einsum("bhop,hdop->bhod", attn, ev)  # (N*M, h, L, d)
    return out.reshape(n, other, heads, length, d).permute(0, 2, 4, 3, 1).reshape(n, w, length, other)


def axial_attention(
    x: torch.Tensor,
    h_w: list[torch.Tensor],
    w_w: list[torch.Tensor],
    heads: int,
    span: int,
    stride: int,
    rel_index: torch.Tensor,
) -> torch.Tensor:
    """Functional core: height layer, width layer, then pooling; ``h_w``/``w_w`` = [wq, wk, wv, rq, rk, rv]."""
    y = axial_layer(x, h_w[0], h_w[1], h_w[2], h_w[3], h_w[4], h_w[5], heads, span, rel_index)
    y = axial_layer(
        y.transpose(2, 3), w_w[0], w_w[1], w_w[2], w_w[3], w_w[4], w_w[5], heads, span, rel_index
    ).transpose(2, 3)
    if stride > 1:
        y = F.avg_pool2d(y, stride, stride, ceil_mode=True)
    return y


def _init(p: torch.Tensor, name: str, fan_in: int, d: int) -> None:
    std = {
        "wq": 1.0 / math.sqrt(fan_in * d),
        "wk": 1.0 / math.sqrt(fan_in),
        "wv": 1.0 / math.sqrt(fan_in),
        "rq": 1.0,
        "rk": 1.0 / math.sqrt(d),
        "rv": 1.0 / math.sqrt(d),
    }[name]
    nn.init.normal_(p, std=std)


class AxialAttention2d(nn.Module):
    """A plain axial-attention operator of fixed size: height layer ``h_*``, width layer ``w_*``.

    ``h_wq/h_wk/h_wv`` (width, in_channels), ``w_wq/w_wk/w_wv`` (width, width), ``*_r*``
    (heads, d, 2 max_len - 1). TorchScript- and ONNX-exportable.
    """

    if TYPE_CHECKING:  # registered by name in __init__; TorchScript cannot read these (string) annotations
        h_wq: torch.Tensor
        h_wk: torch.Tensor
        h_wv: torch.Tensor
        h_rq: torch.Tensor
        h_rk: torch.Tensor
        h_rv: torch.Tensor
        w_wq: torch.Tensor
        w_wk: torch.Tensor
        w_wv: torch.Tensor
        w_rq: torch.Tensor
        w_rk: torch.Tensor
        w_rv: torch.Tensor
        rel_index: torch.Tensor

    def __init__(self, in_channels: int, width: int, heads: int, max_len: int, span: int = 0, stride: int = 1) -> None:
        super().__init__()
        if heads < 1 or width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        self.in_channels, self.width = in_channels, width
        self.heads, self.span, self.stride, self.max_len = heads, span, stride, max_len
        d, offsets = width // heads, 2 * max_len - 1
        for prefix, cin in (("h_", in_channels), ("w_", width)):
            for name in _NAMES:
                shape = (heads, d, offsets) if name.startswith("r") else (width, cin)
                p = nn.Parameter(torch.empty(*shape))
                _init(p, name, cin, d)
                setattr(self, prefix + name, p)
        self.register_buffer("rel_index", relative_index(max_len), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return axial_attention(
            x,
            [self.h_wq, self.h_wk, self.h_wv, self.h_rq, self.h_rk, self.h_rv],
            [self.w_wq, self.w_wk, self.w_wv, self.w_rq, self.w_rk, self.w_rv],
            self.heads,
            self.span,
            self.stride,
            self.rel_index,
        )

    @staticmethod
    def param_count(in_channels: int, width: int, heads: int, max_len: int) -> int:
        """``3 C_in w + 3 w^2 + 6 w (2 max_len - 1)``: two layers' projections and three embeddings each."""
        return axial_attention_params(in_channels, width, heads, max_len)

    @staticmethod
    def macs(height: int, width_px: int, in_channels: int, width: int, heads: int, batch: int = 1) -> int:
        """``N H W (3 C_in w + 5 H w) + N H W (3 w^2 + 5 W w)`` (see the module docstring)."""
        return axial_attention_macs(height, width_px, in_channels, width, heads, batch)


class SuperAxialAttention(GridOutputs, nn.Module):
    """Every (width, heads) of a block's axial operator in one set of weights (see ``ops.heads``).

    ``sharing="multihead"``: projections have H*D rows read as an H x D grid (the width
    layer's input columns too, since its input is the height layer's head-major output);
    embeddings are (H, D, 2 max_len - 1). ``sharing="prefix"``: W rows (and columns), flat
    embeddings (W, 2 max_len - 1).
    """

    if TYPE_CHECKING:  # a buffer registered in __init__ (the weights are read by name, see _layer)
        rel_index: torch.Tensor

    def __init__(
        self,
        in_max: int,
        widths: tuple[int, ...],
        heads: tuple[int, ...],
        max_len: int,
        span: int = 0,
        stride: int = 1,
        sharing: str = "multihead",
    ) -> None:
        super().__init__()
        self.in_max, self.widths, self.head_choices, self.max_len = in_max, tuple(widths), tuple(heads), max_len
        self.span, self.stride, self.sharing = span, stride, check_mode(sharing)
        self.grid = grid_dims(self.widths, self.head_choices)
        big_h, big_d = self.grid
        rows = stored_rows(self.widths, self.head_choices, sharing)
        offsets = 2 * max_len - 1
        for prefix, cin in (("h_", in_max), ("w_", rows)):
            for name in _NAMES:
                if not name.startswith("r"):
                    shape: tuple[int, ...] = (rows, cin)
                elif sharing == "multihead":
                    shape = (big_h, big_d, offsets)
                else:
                    shape = (rows, offsets)
                p = nn.Parameter(torch.empty(*shape))
                _init(p, name, cin, big_d)
                setattr(self, prefix + name, p)
        self.register_buffer("rel_index", relative_index(max_len), persistent=False)

    def _layer(self, prefix: str, in_channels: int, width: int, heads: int) -> list[torch.Tensor]:
        d = width // heads
        out = []
        for name in _NAMES:
            t = getattr(self, prefix + name)
            if name.startswith("r"):
                t = t[:heads, :d] if self.sharing == "multihead" else t[:width].reshape(heads, d, -1)
            elif prefix == "w_":  # input = the height layer's head-major output: slice columns like rows
                t = slice_rows(
                    slice_rows(t, self.sharing, self.grid, width, heads).t(), self.sharing, self.grid, width, heads
                ).t()
            else:
                t = slice_rows(t, self.sharing, self.grid, width, heads)[:, :in_channels]
            out.append(t)
        return out

    def weights(self, in_channels: int, width: int, heads: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sliced [wq, wk, wv, rq, rk, rv] of the height and of the width layer of (width, heads)."""
        if in_channels > self.in_max:
            raise ValueError(f"input has {in_channels} channels, the operator was built for {self.in_max}")
        check_sub(self.sharing, self.grid, max(self.widths), width, heads)
        return self._layer("h_", in_channels, width, heads), self._layer("w_", width, width, heads)

    def forward(self, x: torch.Tensor, width: int, heads: int) -> torch.Tensor:
        """Sub-operator (width, heads) on x (N, C_in <= in_max, H, W); costs only that sub-operator."""
        hw, ww = self.weights(x.shape[1], width, heads)
        return axial_attention(x, hw, ww, heads, self.span, self.stride, self.rel_index)

    def extract(self, width: int, heads: int, in_channels: int | None = None) -> AxialAttention2d:
        """A plain copy (cloned weights) of (width, heads); ``in_channels`` defaults to ``width`` (bottleneck)."""
        cin = width if in_channels is None else in_channels
        m = AxialAttention2d(cin, width, heads, self.max_len, self.span, self.stride)
        hw, ww = self.weights(cin, width, heads)
        with torch.no_grad():
            for prefix, ts in (("h_", hw), ("w_", ww)):
                for name, t in zip(_NAMES, ts, strict=True):
                    getattr(m, prefix + name).copy_(t)
        return m.train(self.training)

    def head_weights(self, i: int, width: int, heads: int) -> dict[str, torch.Tensor]:
        """What head ``i`` of (width, heads) reads, both layers.

        ``h_wq/h_wk/h_wv``: (d, in_max) rows; ``*_r*``: (d, offsets); ``w_wq/w_wk/w_wv``:
        (d, heads, d) — the head's rows, columns grouped by the input head and channel they read.
        """
        if not 0 <= i < heads:
            raise ValueError(f"head {i} not in a {heads}-head operator")
        d = width // heads
        hw, ww = self.weights(self.in_max, width, heads)
        out: dict[str, torch.Tensor] = {}
        for prefix, ts in (("h_", hw), ("w_", ww)):
            for name, t in zip(_NAMES, ts, strict=True):
                if name.startswith("r"):
                    out[prefix + name] = t[i]
                elif prefix == "w_":
                    out[prefix + name] = t[i * d : (i + 1) * d].reshape(d, heads, d)
                else:
                    out[prefix + name] = t[i * d : (i + 1) * d]
        return out

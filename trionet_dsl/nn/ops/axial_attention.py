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

Options (operator arguments; the defaults are the simple shareable operator, which deviates
from the paper in all three):

* ``qk_ratio = R`` — q and k have ``d / R`` channels per head, v has ``d`` (Axial-DeepLab:
  ``R = 2``); ``rq``/``rk`` shrink with them. ``R`` must divide every head dim.
* ``shared_pos = 1`` — one ``rq``/``rk``/``rv`` table for all heads (Axial-DeepLab), instead
  of one per head. Under Multi-head Sharing every head and every sub-network then reads the
  leading channels of that one table.
* ``bn = 1`` — batch norm on the q/k/v projections, on the three logit terms (one entry per
  term and head) before they are summed, and on the two output terms ``attn.v``,
  ``attn.rv`` before they are summed, as Axial-DeepLab does (3 BNs per layer).

The logits are not scaled; as in ``local_attention`` the ``1/sqrt(d)`` temperature is in the
init (``Wq`` std ``1/sqrt(C_in d)``, ``Wk``/``Wv`` std ``1/sqrt(C_in)``), and each
embedding is scaled so its logit term has about unit variance at init: ``rq`` std 1,
``rk`` std ``1/sqrt(d)``; ``rv`` std ``1/sqrt(d)`` keeps it small next to ``v``.

Multiply-adds (MACs), input ``N x C_in x H x W``, ``w`` output channels (any ``h``), ``R``
the q/k ratio::

    N * H * W * ((2/R + 1) * C_in * w + (3/R + 2) * H * w)      height layer
  + N * H * W * ((2/R + 1) * w * w    + (3/R + 2) * W * w)      width layer

projections, then ``L`` keys per output for each of ``q.k``, ``q.rq``, ``k.rk`` (``w/R``
channels) and ``attn.v``, ``attn.rv`` (``w``). The full ``L x L`` logits are computed even
with a span (masked), so the span does not change the count; pooling and BN are not
counted. With the defaults: ``N H W (3 C_in w + 5 H w) + N H W (3 w^2 + 5 W w)``.

Parameters of the plain operator, per layer (input ``c``: ``C_in``, then ``w``):
``(2w/R + w) c`` projections, ``E (2 max_len - 1)`` embeddings with ``E = 2w/R + w`` per
head or ``2d/R + d`` shared, and with ``bn`` ``2 (2w/R + w) + 6h + 4w`` BN weights and
biases. Defaults: ``3 C_in w + 3 w^2 + 6 w (2 max_len - 1)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.nn.ops.heads import (
    GridOutputs,
    Take,
    cached,
    check_mode,
    check_sub,
    grid_dims,
    grid_index,
    lead,
    row_axis,
    stored_rows,
)
from trionet_dsl.space.op_costs import axial_attention_macs, axial_attention_params

BN_MOMENTUM, BN_EPS = 0.1, 1e-5

_NAMES = ("wq", "wk", "wv", "rq", "rk", "rv")


def relative_index(max_len: int) -> torch.Tensor:
    """(max_len, max_len) table ``[o, p] = p - o + max_len - 1``; its top-left ``L x L`` is the central slice."""
    pos = torch.arange(max_len)
    return pos[None, :] - pos[:, None] + (max_len - 1)


def _bn(t: torch.Tensor, p: list[torch.Tensor], training: bool) -> torch.Tensor:
    """Batch norm of t (N, C, ...) with p = [weight, bias, running_mean, running_var] (updated in training)."""
    return F.batch_norm(t, p[2], p[3], p[0], p[1], training, 0.1, 1e-5)  # BN_MOMENTUM, BN_EPS


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
    bn: list[torch.Tensor],
    training: bool,
) -> torch.Tensor:
    """``axial_layer_qkv`` with the three projections apart: wq/wk (h dq, C), wv (w, C)."""
    wqkv = torch.cat([wq, wk, wv], 0)
    return axial_layer_qkv(x, wqkv, wq.shape[0], rq, rk, rv, heads, span, rel_index, bn, training)


def axial_layer_qkv(
    x: torch.Tensor,
    wqkv: torch.Tensor,
    wqk: int,
    rq: torch.Tensor,
    rk: torch.Tensor,
    rv: torch.Tensor,
    heads: int,
    span: int,
    rel_index: torch.Tensor,
    bn: list[torch.Tensor],
    training: bool,
) -> torch.Tensor:
    """Attention along dim 2 of x (N, C, L, M): wqkv (2 wqk + w, C), the q, k (``wqk = h dq`` rows each)
    and v projections one after another; rq/rk (h or 1, dq, 2 max_len - 1), rv (h or 1, d, ...); span 0
    = global. ``bn``: [] or 12 tensors, the qkv, logit and output BNs' [weight, bias, running_mean,
    running_var]."""
    n, _, length, other = x.shape
    max_len = rel_index.shape[0]
    if length > max_len:
        raise ValueError(
            f"axial attention built for axes up to max_len={max_len} got an axis of length "
            f"{length}; build it with a larger max_len"
        )
    w = wqkv.shape[0] - 2 * wqk
    d, dq = w // heads, wqk // heads
    b = n * other
    qkv = F.conv2d(x, wqkv[:, :, None, None])  # (N, 2 wqk + w, L, M)
    if len(bn) > 0:
        qkv = _bn(qkv, bn[0:4], training)
    # -> (N*M, h, L, d): each line along the axis is one batch entry of the matmuls below
    q = qkv[:, :wqk].reshape(n, heads, dq, length, other).permute(0, 4, 1, 3, 2).reshape(b, heads, length, dq)
    k = qkv[:, wqk : 2 * wqk].reshape(n, heads, dq, length, other).permute(0, 4, 1, 3, 2).reshape(b, heads, length, dq)
    v = qkv[:, 2 * wqk :].reshape(n, heads, d, length, other).permute(0, 4, 1, 3, 2).reshape(b, heads, length, d)
    idx = rel_index[:length, :length]
    eq, ek, ev = rq[:, :, idx], rk[:, :, idx], rv[:, :, idx]  # (h or 1, d, L_o, L_p)
    eq, ek, ev = eq.expand(heads, -1, -1, -1), ek.expand(heads, -1, -1, -1), ev.expand(heads, -1, -1, -1)
    qk = torch.matmul(q, k.transpose(2, 3))
    qr = torch.einsum("bhod,hdop->bhop", q, eq)
    kr = torch.einsum("bhpd,hdop->bhop", k, ek)
    if len(bn) > 0:  # one BN entry per (term, head), then the terms are summed
        logits = _bn(torch.cat([qk, qr, kr], 1), bn[4:8], training).reshape(b, 3, heads, length, length).sum(1)
    else:
        logits = qk + qr + kr
    if span > 0:
        far = (idx - (max_len - 1)).abs() > span // 2
        logits = logits.masked_fill(far, float("-inf"))
    attn = torch.softmax(logits, dim=3)
    sv = torch.matmul(attn, v)
    sve = torch.einsum("bhop,hdop->bhod", attn, ev)  # (N*M, h, L, d)
    if len(bn) > 0:  # BN over the two output terms (2w channels, term-major), then their sum
        both = torch.stack([sv, sve], 1).reshape(n, other, 2, heads, length, d).permute(0, 2, 3, 5, 4, 1)
        both = _bn(both.reshape(n, 2 * w, length, other), bn[8:12], training)
        return both[:, :w] + both[:, w:]
    out = sv + sve
    return out.reshape(n, other, heads, length, d).permute(0, 2, 4, 3, 1).reshape(n, w, length, other)


def axial_attention(
    x: torch.Tensor,
    h_w: list[torch.Tensor],
    w_w: list[torch.Tensor],
    heads: int,
    span: int,
    stride: int,
    rel_index: torch.Tensor,
    h_bn: list[torch.Tensor],
    w_bn: list[torch.Tensor],
    training: bool,
) -> torch.Tensor:
    """Functional core: height layer, width layer, then pooling; ``h_w``/``w_w`` = [wq, wk, wv, rq, rk, rv],
    ``h_bn``/``w_bn`` the layers' BN tensors ([] without BN, see :func:`axial_layer_qkv`)."""
    h4 = [torch.cat([h_w[0], h_w[1], h_w[2]], 0), h_w[3], h_w[4], h_w[5]]
    w4 = [torch.cat([w_w[0], w_w[1], w_w[2]], 0), w_w[3], w_w[4], w_w[5]]
    return axial_attention_qkv(x, h4, w4, h_w[0].shape[0], heads, span, stride, rel_index, h_bn, w_bn, training)


def axial_attention_qkv(
    x: torch.Tensor,
    h_w: list[torch.Tensor],
    w_w: list[torch.Tensor],
    wqk: int,
    heads: int,
    span: int,
    stride: int,
    rel_index: torch.Tensor,
    h_bn: list[torch.Tensor],
    w_bn: list[torch.Tensor],
    training: bool,
) -> torch.Tensor:
    """``axial_attention`` with each layer's projections as one weight: ``h_w``/``w_w`` = [wqkv, rq, rk, rv]
    (see :func:`axial_layer_qkv`; ``wqk`` rows of q and of k)."""
    y = axial_layer_qkv(x, h_w[0], wqk, h_w[1], h_w[2], h_w[3], heads, span, rel_index, h_bn, training)
    y = axial_layer_qkv(
        y.transpose(2, 3), w_w[0], wqk, w_w[1], w_w[2], w_w[3], heads, span, rel_index, w_bn, training
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


class AxialNorms(nn.Module):
    """One axial layer's three batch norms (q/k/v projections, logit terms, output terms), kept
    as plain tensors so the functional core (and TorchScript) can pass them around."""

    if TYPE_CHECKING:  # registered by name in __init__
        qkv_weight: torch.Tensor
        qkv_bias: torch.Tensor
        qkv_mean: torch.Tensor
        qkv_var: torch.Tensor
        sim_weight: torch.Tensor
        sim_bias: torch.Tensor
        sim_mean: torch.Tensor
        sim_var: torch.Tensor
        out_weight: torch.Tensor
        out_bias: torch.Tensor
        out_mean: torch.Tensor
        out_var: torch.Tensor

    def __init__(self, qkv: int, logits: int, outputs: int) -> None:
        super().__init__()
        for name, c in (("qkv", qkv), ("sim", logits), ("out", outputs)):
            setattr(self, f"{name}_weight", nn.Parameter(torch.ones(c)))
            setattr(self, f"{name}_bias", nn.Parameter(torch.zeros(c)))
            self.register_buffer(f"{name}_mean", torch.zeros(c))
            self.register_buffer(f"{name}_var", torch.ones(c))

    def tensors(self) -> list[torch.Tensor]:
        """[weight, bias, running_mean, running_var] of the qkv, logit and output BNs (12 tensors)."""
        return [
            self.qkv_weight,
            self.qkv_bias,
            self.qkv_mean,
            self.qkv_var,
            self.sim_weight,
            self.sim_bias,
            self.sim_mean,
            self.sim_var,
            self.out_weight,
            self.out_bias,
            self.out_mean,
            self.out_var,
        ]


class AxialAttention2d(nn.Module):
    """A plain axial-attention operator of fixed size: height layer ``h_*``, width layer ``w_*``.

    ``h_wq/h_wk/h_wv`` (width, in_channels), ``w_wq/w_wk/w_wv`` (width, width), ``*_r*``
    (heads, d, 2 max_len - 1); with ``qk_ratio = R`` q/k and ``rq``/``rk`` have ``d / R`` channels
    per head, with ``shared_pos`` one embedding table (first dim 1), with ``bn`` the layers'
    :class:`AxialNorms` ``h_norm``/``w_norm``. TorchScript- and ONNX-exportable.
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

    def __init__(
        self,
        in_channels: int,
        width: int,
        heads: int,
        max_len: int,
        span: int = 0,
        stride: int = 1,
        qk_ratio: int = 1,
        shared_pos: bool = False,
        bn: bool = False,
    ) -> None:
        super().__init__()
        if heads < 1 or width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        d = width // heads
        if qk_ratio < 1 or d % qk_ratio:
            raise ValueError(f"qk_ratio {qk_ratio} does not divide the head dim {d}")
        self.in_channels, self.width = in_channels, width
        self.heads, self.span, self.stride, self.max_len = heads, span, stride, max_len
        self.qk_ratio, self.shared_pos, self.bn = qk_ratio, shared_pos, bn
        dq, offsets, he = d // qk_ratio, 2 * max_len - 1, 1 if shared_pos else heads
        for prefix, cin in (("h_", in_channels), ("w_", width)):
            for name in _NAMES:
                rows = dq if name in ("rq", "rk", "wq", "wk") else d
                shape = (he, rows, offsets) if name.startswith("r") else (heads * rows, cin)
                p = nn.Parameter(torch.empty(*shape))
                _init(p, name, cin, dq)
                setattr(self, prefix + name, p)
        wqk = heads * dq
        self.h_norm = AxialNorms(2 * wqk + width, 3 * heads, 2 * width) if bn else None
        self.w_norm = AxialNorms(2 * wqk + width, 3 * heads, 2 * width) if bn else None
        self.register_buffer("rel_index", relative_index(max_len), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h_bn: list[torch.Tensor] = []
        w_bn: list[torch.Tensor] = []
        if self.h_norm is not None and self.w_norm is not None:
            h_bn, w_bn = self.h_norm.tensors(), self.w_norm.tensors()
        return axial_attention(
            x,
            [self.h_wq, self.h_wk, self.h_wv, self.h_rq, self.h_rk, self.h_rv],
            [self.w_wq, self.w_wk, self.w_wv, self.w_rq, self.w_rk, self.w_rv],
            self.heads,
            self.span,
            self.stride,
            self.rel_index,
            h_bn,
            w_bn,
            self.training,
        )

    @staticmethod
    def param_count(
        in_channels: int,
        width: int,
        heads: int,
        max_len: int,
        qk_ratio: int = 1,
        shared_pos: bool = False,
        bn: bool = False,
    ) -> int:
        """Defaults: ``3 C_in w + 3 w^2 + 6 w (2 max_len - 1)`` (options: see the module docstring)."""
        return axial_attention_params(in_channels, width, heads, max_len, qk_ratio, shared_pos, bn)

    @staticmethod
    def macs(height: int, width_px: int, in_channels: int, width: int, heads: int, batch: int = 1) -> int:
        """``N H W (3 C_in w + 5 H w) + N H W (3 w^2 + 5 W w)`` (see the module docstring)."""
        return axial_attention_macs(height, width_px, in_channels, width, heads, batch)


class _AxialPlan(NamedTuple):
    """What sub-operator (width, heads) reads: (q/k, v) ``Take`` of the height and of the width
    layer, its head dims, and its BN entries (qkv, logit, output; empty without ``bn``)."""

    takes: tuple[tuple[Take, Take], tuple[Take, Take]]
    d: int
    dq: int
    norms: list[torch.Tensor]


class SuperAxialAttention(GridOutputs, nn.Module):
    """Every (width, heads) of a block's axial operator in one set of weights (see ``ops.heads``).

    ``sharing="multihead"``: projections have H*D rows read as an H x D grid (q/k: H x D/R; the
    width layer's input columns too, since its input is the height layer's head-major output);
    embeddings are (H, D, 2 max_len - 1) (``rq``/``rk``: D/R). ``sharing="prefix"``: W rows (q/k:
    W/R) and columns, flat embeddings (W, 2 max_len - 1). ``shared_pos``: one table (1, D or D/R,
    offsets) in both modes, whose leading channels every head reads. ``bn``: the BN entries are
    addressed like the rows they normalise (grid positions, or per (term, head) for the logits).
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
        qk_ratio: int = 1,
        shared_pos: bool = False,
        bn: bool = False,
    ) -> None:
        super().__init__()
        self.in_max, self.widths, self.head_choices, self.max_len = in_max, tuple(widths), tuple(heads), max_len
        self.span, self.stride, self.sharing = span, stride, check_mode(sharing)
        self.qk_ratio, self.shared_pos, self.bn = qk_ratio, shared_pos, bn
        self.grid = grid_dims(self.widths, self.head_choices)
        big_h, big_d = self.grid
        if big_d % qk_ratio:
            raise ValueError(f"qk_ratio {qk_ratio} does not divide the head dim {big_d}")
        self.qk_grid = (big_h, big_d // qk_ratio)
        rows = stored_rows(self.widths, self.head_choices, sharing)
        self.qk_rows = rows // qk_ratio
        offsets = 2 * max_len - 1
        for prefix, cin in (("h_", in_max), ("w_", rows)):
            for name in _NAMES:
                qk = name in ("wq", "wk", "rq", "rk")
                if not name.startswith("r"):
                    shape: tuple[int, ...] = (self.qk_rows if qk else rows, cin)
                elif shared_pos:
                    shape = (1, big_d // qk_ratio if qk else big_d, offsets)
                elif sharing == "multihead":
                    shape = (big_h, big_d // qk_ratio if qk else big_d, offsets)
                else:
                    shape = (self.qk_rows if qk else rows, offsets)
                p = nn.Parameter(torch.empty(*shape))
                _init(p, name, cin, big_d // qk_ratio)
                setattr(self, prefix + name, p)
        if bn:
            self.h_norm = AxialNorms(2 * self.qk_rows + rows, 3 * big_h, 2 * rows)
            self.w_norm = AxialNorms(2 * self.qk_rows + rows, 3 * big_h, 2 * rows)
        self.register_buffer("rel_index", relative_index(max_len), persistent=False)

    def _plan(self, in_channels: int, width: int, heads: int, device: torch.device) -> _AxialPlan:
        """How (width, heads) over ``in_channels`` inputs reads every weight, worked out once."""
        return cached(self, (in_channels, width, heads, device), lambda: self._build(in_channels, width, heads, device))

    def _build(self, in_channels: int, width: int, heads: int, device: torch.device) -> _AxialPlan:
        if in_channels > self.in_max:
            raise ValueError(f"input has {in_channels} channels, the operator was built for {self.in_max}")
        d = check_sub(self.sharing, self.grid, max(self.widths), width, heads)
        if d % self.qk_ratio:
            raise ValueError(f"qk_ratio {self.qk_ratio} does not divide the head dim {d}")
        qi = row_axis(self.sharing, self.qk_grid, width // self.qk_ratio, heads)
        vi = row_axis(self.sharing, self.grid, width, heads)
        cols = lead(in_channels)
        # the width layer's input is the height layer's head-major output: its columns are read like rows
        takes = ((Take(qi, cols), Take(vi, cols)), (Take(qi, vi), Take(vi, vi)))
        norms = self.norm_index(width, heads, device) if self.bn else []
        return _AxialPlan(takes, d, d // self.qk_ratio, norms)

    def _layer(self, prefix: str, plan: _AxialPlan, width: int, heads: int) -> list[torch.Tensor]:
        """[wq, wk, wv, rq, rk, rv] of one layer, read."""
        qk_take, v_take = plan.takes[0 if prefix == "h_" else 1]
        out = [qk_take(getattr(self, prefix + "wq")), qk_take(getattr(self, prefix + "wk"))]
        return [*out, v_take(getattr(self, prefix + "wv")), *self._embeddings(prefix, plan, heads)]

    def _layer_qkv(self, prefix: str, plan: _AxialPlan, width: int, heads: int) -> list[torch.Tensor]:
        """[wqkv, rq, rk, rv] of one layer: q, k and v read in one copy where they have the same rows
        (``qk_ratio`` 1, see ``Take.stack``)."""
        qk_take, v_take = plan.takes[0 if prefix == "h_" else 1]
        wq, wk, wv = (getattr(self, prefix + n) for n in ("wq", "wk", "wv"))
        if self.qk_ratio == 1:
            wqkv = qk_take.stack([wq, wk, wv])
        else:
            wqkv = torch.cat([qk_take.stack([wq, wk]), v_take(wv)], 0)
        return [wqkv, *self._embeddings(prefix, plan, heads)]

    def _embeddings(self, prefix: str, plan: _AxialPlan, heads: int) -> list[torch.Tensor]:
        """[rq, rk, rv] of one layer, read."""
        out: list[torch.Tensor] = []
        for name, dn in (("rq", plan.dq), ("rk", plan.dq), ("rv", plan.d)):
            t = getattr(self, prefix + name)
            if self.shared_pos:
                t = t[:, :dn] if dn < t.shape[1] else t
            elif self.sharing == "multihead":
                t = t[:heads] if heads < t.shape[0] else t
                t = t[:, :dn] if dn < t.shape[1] else t
            else:
                t = t[: heads * dn].reshape(heads, dn, -1)
            out.append(t)
        return out

    def norm_index(self, width: int, heads: int, device: torch.device | None = None) -> list[torch.Tensor]:
        """Stored BN entries of (width, heads): of the qkv, logit and output BNs."""
        device = self.rel_index.device if device is None else device
        wqk = width // self.qk_ratio
        if self.sharing == "multihead":
            qi, vi = grid_index(self.qk_grid, wqk, heads), grid_index(self.grid, width, heads)
        else:
            qi, vi = list(range(wqk)), list(range(width))
        sq, sv, big_h = self.qk_rows, stored_rows(self.widths, self.head_choices, self.sharing), self.grid[0]
        qkv = qi + [sq + i for i in qi] + [2 * sq + i for i in vi]
        sim = [t * big_h + i for t in range(3) for i in range(heads)]
        out = vi + [sv + i for i in vi]
        return [torch.tensor(ix, dtype=torch.long, device=device) for ix in (qkv, sim, out)]

    def _norms(self, idx: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if not self.bn:
            return [], []
        out: list[list[torch.Tensor]] = []
        for norm in (self.h_norm, self.w_norm):
            ts = norm.tensors()
            out.append([t.index_select(0, idx[k // 4]) for k, t in enumerate(ts)])
        return out[0], out[1]

    def norms(self, width: int, heads: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The BN tensors of (width, heads), gathered (copies), for the height and the width layer."""
        return self._norms(self.norm_index(width, heads) if self.bn else [])

    def weights(self, in_channels: int, width: int, heads: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sliced [wq, wk, wv, rq, rk, rv] of the height and of the width layer of (width, heads)."""
        plan = self._plan(in_channels, width, heads, self.rel_index.device)
        return self._layer("h_", plan, width, heads), self._layer("w_", plan, width, heads)

    def forward(self, x: torch.Tensor, width: int, heads: int) -> torch.Tensor:
        """Sub-operator (width, heads) on x (N, C_in <= in_max, H, W); costs only that sub-operator."""
        plan = self._plan(x.shape[1], width, heads, x.device)
        hw, ww = self._layer_qkv("h_", plan, width, heads), self._layer_qkv("w_", plan, width, heads)
        h_bn, w_bn = self._norms(plan.norms)
        wqk = heads * plan.dq
        y = axial_attention_qkv(
            x, hw, ww, wqk, heads, self.span, self.stride, self.rel_index, h_bn, w_bn, self.training
        )
        if self.bn and self.training:  # the gathered running statistics were updated: scatter them back
            with torch.no_grad():
                for norm, got in ((self.h_norm, h_bn), (self.w_norm, w_bn)):
                    for k, (name, t) in enumerate(zip(_NORM_NAMES, got, strict=True)):
                        if name.endswith(("_mean", "_var")):
                            getattr(norm, name).index_copy_(0, plan.norms[k // 4], t)
        return y

    def extract(self, width: int, heads: int, in_channels: int | None = None) -> AxialAttention2d:
        """A plain copy (cloned weights) of (width, heads); ``in_channels`` defaults to ``width`` (bottleneck)."""
        cin = width if in_channels is None else in_channels
        m = AxialAttention2d(
            cin, width, heads, self.max_len, self.span, self.stride, self.qk_ratio, self.shared_pos, self.bn
        )
        hw, ww = self.weights(cin, width, heads)
        h_bn, w_bn = self.norms(width, heads)
        with torch.no_grad():
            for prefix, ts in (("h_", hw), ("w_", ww)):
                for name, t in zip(_NAMES, ts, strict=True):
                    getattr(m, prefix + name).copy_(t)
            if m.h_norm is not None and m.w_norm is not None:
                for norm, got in ((m.h_norm, h_bn), (m.w_norm, w_bn)):
                    for name, t in zip(_NORM_NAMES, got, strict=True):
                        getattr(norm, name).copy_(t)
        return m.train(self.training)

    def head_weights(self, i: int, width: int, heads: int) -> dict[str, torch.Tensor]:
        """What head ``i`` of (width, heads) reads, both layers (the defaults: q/k ratio 1, per-head embeddings).

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


_NORM_NAMES = tuple(f"{n}_{p}" for n in ("qkv", "sim", "out") for p in ("weight", "bias", "mean", "var"))

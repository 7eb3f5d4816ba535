"""Stand-alone local self-attention (SASA: Ramachandran et al. 2019, "Stand-Alone
Self-Attention in Vision Models"), multi-head, with relative position embeddings.

Pixel ``(i, j)`` attends to its ``K x K`` neighbourhood ``N(i, j)`` (``K`` = span, odd; zero
padding ``K // 2``; padded positions are masked out of the softmax with ``-inf``, never
attended as zero keys). Per head, with ``q = Wq x``, ``k = Wk x``, ``v = Wv x`` (1x1, no bias):

    y_ij = sum_{(a,b) in N(i,j)} softmax_ab( q_ij . k_ab + q_ij . r_{a-i, b-j} ) v_ab

``r`` has SASA's row/column halves: the first ``ceil(d/2)`` channels of the head's query
meet a row-offset embedding ``r_row[a-i]``, the other ``floor(d/2)`` a column-offset
embedding ``r_col[b-j]`` (so any head dim ``d`` works, odd included).

Logits are **not** scaled by ``1/sqrt(d)``: SASA's formula has no scale, and we keep it.
The usual temperature lives in the initialisation instead: ``Wq`` is drawn with std
``1/sqrt(C_in * d)`` (``Wk``, ``Wv``: ``1/sqrt(C_in)``), so at init ``q . k`` has about unit
variance and the softmax is not saturated; training may then sharpen it freely. The
position embeddings are drawn with std 1, which (against ``q``'s ``1/d`` variance and the
``d/2`` channels of each half) gives the position term unit variance too: at init a head
attends by content and by position in equal measure.

A stride ``s > 1`` is an ``s x s`` average pool after the attention (``ceil_mode=True``, so
the output is ``ceil(H/s) x ceil(W/s)``), as SASA does.

Multiply-adds (MACs), input ``N x C_in x H x W``, ``w`` output channels, ``h`` heads,
span ``K`` (independent of ``h`` and of the stride — attention runs at full resolution,
pooling is not counted)::

    N * H * W * (3 * C_in * w  +  2 * K^2 * w  +  K * w)

projections (``3 C_in w``), content logits and weighted sum of values (``K^2 w`` each),
and the relative logits (each head: ``K`` row offsets x ``ceil(d/2)`` plus ``K`` column
offsets x ``floor(d/2)`` = ``K d``; the ``K^2`` row+column sums are additions).

Parameters of the plain operator: ``3 * C_in * w + w * K``.
"""

from __future__ import annotations

import math
from typing import Any

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
    lead,
    row_axis,
    split_halves,
    stored_rows,
)
from trionet_dsl.space.op_costs import local_attention_macs, local_attention_params

#: Auto mode chunks the output rows once the unfolded keys and values of the whole input would
#: exceed this many bytes (see ``chunk_rows_for``); each chunk's unfold is then at most this big.
CHUNK_BYTES = 32 * 2**20

#: ``chunk_rows`` value that selects the offset-loop formulation (``_shifted_forward``; under
#: torch.compile the custom op ``trionet_dsl::shifted_local_attention``).
SHIFTED = -1

#: Auto mode takes the offset loop from this many pixels up (or past ``CHUNK_BYTES``): measured
#: fwd+bwd on CPU, 1 thread, batch 64, span 5, 4 heads, it ran 4.4x faster than the unfold at 16 ch
#: 32x32, 3.7x at 32 ch 16x16, and 0.9x at 64 ch 8x8, where its K^2 small ops cost more than they save.
SHIFTED_MIN_PIXELS = 16 * 16


def chunk_rows_for(
    n: int, width: int, span: int, height: int, width_px: int, itemsize: int, chunk_rows: int | None
) -> int:
    """Output rows per chunk: ``height`` (one chunk, today's formulation) or fewer.

    ``chunk_rows``: ``None`` = by size (one chunk while the unfold of k and v, ``N * 2w * K^2 * H * W``
    elements, fits in ``CHUNK_BYTES``; otherwise as many rows as fit, at least 1); ``0`` = never
    chunk; ``r > 0`` = chunks of ``r`` rows.
    """
    if chunk_rows is not None:
        return height if chunk_rows <= 0 else min(chunk_rows, height)
    per_row = n * 2 * width * span * span * width_px * itemsize
    if per_row * height <= CHUNK_BYTES:
        return height
    return max(1, min(height, CHUNK_BYTES // max(per_row, 1)))


def _band_kv(kv: torch.Tensor, span: int, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K^2 copies of a band's keys and values: kv (N, 2w, R + 2p, W) -> k, v (N, h, d, K^2, R*W)."""
    n, c2, rows_in, width = kv.shape
    rows = rows_in - 2 * (span // 2)
    d = c2 // (2 * heads)
    unf = F.unfold(kv, span, padding=(0, span // 2))
    k, v = unf.reshape(n, 2, heads, d, span * span, rows * width).unbind(1)
    return k, v


def _band_attention(
    q: torch.Tensor, k: torch.Tensor, rel_row: torch.Tensor, rel_col: torch.Tensor, valid: torch.Tensor, span: int
) -> torch.Tensor:
    """Softmax weights of a band: q (N, h, d, L), k (N, h, d, K^2, L), valid (K^2, L) -> (N, h, K^2, L)."""
    n, heads, _, hw = q.shape
    dr = rel_row.shape[1]
    logits = (q[:, :, :, None] * k).sum(2)
    row = torch.einsum("nhdl,hda->nhal", q[:, :, :dr], rel_row)
    col = torch.einsum("nhdl,hdb->nhbl", q[:, :, dr:], rel_col)
    rel = (row[:, :, :, None, :] + col[:, :, None, :, :]).reshape(n, heads, span * span, hw)
    logits = (logits + rel).masked_fill(valid < 0.5, float("-inf"))
    return torch.softmax(logits, dim=2)


class _BandedLocalAttention(torch.autograd.Function):
    """SASA over bands of output rows with a hand-written backward.

    Forward keeps only q, k/v (not unfolded) and the softmax weights (``N h K^2 H W``, 1/(2d) of
    the unfold); backward re-unfolds one band of k and v at a time and folds its gradient back
    (``F.fold`` sums the overlapping halos). So at most one band's K^2 copies exist at a time.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        kv_in: torch.Tensor,
        rel_row: torch.Tensor,
        rel_col: torch.Tensor,
        heads: int,
        span: int,
        rows: int,
    ) -> torch.Tensor:
        n, w, height, width = q.shape
        d = w // heads
        pad = span // 2
        kv = F.pad(kv_in, (0, 0, pad, pad))  # zero halo rows: every band slices the same way
        ones = torch.ones(1, 1, height, width, dtype=q.dtype, device=q.device)
        valid = F.unfold(ones, span, padding=pad)[0]  # (K^2, HW)
        qh = q.reshape(n, heads, d, height * width)
        out = torch.empty_like(qh)
        attn = qh.new_empty(n, heads, span * span, height * width)
        for r0 in range(0, height, rows):
            r1 = min(r0 + rows, height)
            cols = slice(r0 * width, r1 * width)
            k, v = _band_kv(kv[:, :, r0 : r1 + 2 * pad], span, heads)
            a = _band_attention(qh[..., cols], k, rel_row, rel_col, valid[:, cols], span)
            attn[..., cols] = a
            out[..., cols] = (a[:, :, None] * v).sum(3)
        ctx.save_for_backward(qh, kv, rel_row, rel_col, attn)
        ctx.shape = (heads, span, rows, height, width)
        return out.reshape(n, w, height, width)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        qh, kv, rel_row, rel_col, attn = ctx.saved_tensors
        heads, span, rows, height, width = ctx.shape
        n, _, d, _ = qh.shape
        pad, kk = span // 2, span * span
        dr = rel_row.shape[1]
        go = grad_out.reshape(n, heads, d, height * width)
        g_q = torch.empty_like(qh)
        g_kv = torch.zeros_like(kv)
        g_row = torch.zeros_like(rel_row)
        g_col = torch.zeros_like(rel_col)
        for r0 in range(0, height, rows):
            r1 = min(r0 + rows, height)
            cols = slice(r0 * width, r1 * width)
            hw = (r1 - r0) * width
            k, v = _band_kv(kv[:, :, r0 : r1 + 2 * pad], span, heads)
            a, g, q = attn[..., cols], go[..., cols, None].transpose(3, 4), qh[..., cols]
            g_a = (g * v).sum(2)  # (N, h, K^2, L)
            g_v = a[:, :, None] * g
            g_l = a * (g_a - (a * g_a).sum(2, keepdim=True))  # softmax backward; masked entries have a = 0
            g_l2 = g_l.reshape(n, heads, span, span, hw)
            g_r, g_c = g_l2.sum(3), g_l2.sum(2)  # (N, h, K, L): row / column offset logits
            gq = (g_l[:, :, None] * k).sum(3)
            gq[:, :, :dr] += torch.einsum("nhal,hda->nhdl", g_r, rel_row)
            gq[:, :, dr:] += torch.einsum("nhbl,hdb->nhdl", g_c, rel_col)
            g_q[..., cols] = gq
            g_row += torch.einsum("nhdl,nhal->hda", q[:, :, :dr], g_r)
            g_col += torch.einsum("nhdl,nhbl->hdb", q[:, :, dr:], g_c)
            g_k = g_l[:, :, None] * q[:, :, :, None]
            g_unf = torch.stack([g_k, g_v], 1).reshape(n, 2 * heads * d * kk, hw)
            g_kv[:, :, r0 : r1 + 2 * pad] += F.fold(g_unf, (r1 - r0 + 2 * pad, width), span, padding=(0, pad))
        g_kv_in = g_kv[:, :, pad : pad + height]
        return g_q.reshape(n, heads * d, height, width), g_kv_in, g_row, g_col, None, None, None


@torch.jit.unused
def _banded(
    q: torch.Tensor, kv_in: torch.Tensor, rel_row: torch.Tensor, rel_col: torch.Tensor, heads: int, span: int, rows: int
) -> torch.Tensor:
    out: torch.Tensor = _BandedLocalAttention.apply(q, kv_in, rel_row, rel_col, heads, span, rows)
    return out


def _shifted_forward(
    q: torch.Tensor, kv_in: torch.Tensor, rel_row: torch.Tensor, rel_col: torch.Tensor, heads: int, span: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SASA as a loop over the K^2 neighbour offsets of zero-padded k and v: (output, softmax
    weights, padded k/v), the last two for backward.

    Each offset ``(a, b)`` is a strided view of the padded k/v (no copy): its logit is one
    multiply-and-sum over d, its share of the output one in-place ``addcmul_``. Nothing of size
    ``K^2 * w * H * W`` ever exists; backward needs q, k/v and the softmax weights (``K^2 N h H W``,
    1/(2d) of the unfold).
    """
    n, w, height, width = q.shape
    d, pad = w // heads, span // 2
    padded = F.pad(kv_in, (pad, pad, pad, pad))
    kvp = padded.reshape(n, 2, heads, d, height + 2 * pad, width + 2 * pad)
    qh = q.reshape(n, heads, d, height, width)
    logits = _offset_dots(qh, kvp[:, 0], span)
    _add_rel_and_mask(logits, qh, rel_row, rel_col, span)
    attn = torch.softmax(logits, dim=0)
    del logits
    out = torch.zeros(qh.shape, dtype=qh.dtype, device=qh.device)
    vp = kvp[:, 1]
    for a in range(span):
        for b in range(span):
            out.addcmul_(attn[a * span + b, :, :, None], vp[..., a : a + height, b : b + width])
    return out.reshape(n, w, height, width), attn, padded


def _shifted_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    padded: torch.Tensor,
    rel_row: torch.Tensor,
    rel_col: torch.Tensor,
    attn: torch.Tensor,
    span: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of q, padded k/v, rel_row and rel_col from forward's padded k/v: each offset's k/v gradient
    is added into the matching view of one padded buffer, so no ``F.fold`` and no per-band halo
    recomputation."""
    n, w, height, width = q.shape
    heads = attn.shape[2]
    d, pad, dr = w // heads, span // 2, rel_row.shape[1]
    kvp = padded.reshape(n, 2, heads, d, height + 2 * pad, width + 2 * pad)
    qh = q.reshape(n, heads, d, height, width)
    go = grad_out.reshape(n, heads, d, height, width)
    g_a = _offset_dots(go, kvp[:, 1], span)  # dL/dattn, (K^2, N, h, H, W)
    g_l = g_a.sub_((attn * g_a).sum(0, keepdim=True)).mul_(attn)  # softmax backward; masked: attn = 0
    del g_a
    g_kvp = torch.zeros(kvp.shape, dtype=kvp.dtype, device=kvp.device)
    g_kp, g_vp = g_kvp[:, 0], g_kvp[:, 1]
    g_q = torch.zeros(qh.shape, dtype=qh.dtype, device=qh.device)
    kp = kvp[:, 0]
    for a in range(span):
        for b in range(span):
            i = a * span + b
            ys, xs = slice(a, a + height), slice(b, b + width)
            g_vp[..., ys, xs].addcmul_(attn[i, :, :, None], go)
            g_kp[..., ys, xs].addcmul_(g_l[i, :, :, None], qh)
            g_q.addcmul_(g_l[i, :, :, None], kp[..., ys, xs])
    g_l2 = g_l.reshape(span, span, n, heads, height, width)
    g_r, g_c = g_l2.sum(1), g_l2.sum(0)  # (K, N, h, H, W): row / column offset logits
    g_q[:, :, :dr] += torch.einsum("anhxy,hda->nhdxy", g_r, rel_row)
    g_q[:, :, dr:] += torch.einsum("bnhxy,hdb->nhdxy", g_c, rel_col)
    g_row = torch.einsum("nhdxy,anhxy->hda", qh[:, :, :dr], g_r)
    g_col = torch.einsum("nhdxy,bnhxy->hdb", qh[:, :, dr:], g_c)
    # contiguous and of the inputs' dtypes (under autocast einsum may answer another), as the fake
    # kernels below promise the compiler; k/v's gradient stays padded (the caller takes its interior
    # as a view: no copy here)
    grads = (g_q.reshape(n, w, height, width), g_kvp.reshape(padded.shape), g_row, g_col)
    like = (q, padded, rel_row, rel_col)
    g0, g1, g2, g3 = (g.to(t.dtype).contiguous() for g, t in zip(grads, like, strict=True))
    return g0, g1, g2, g3


# Under torch.compile the offset loop runs as two PyTorch custom operators, forward and backward, with
# autograd registered between them, so that the compiler sees one opaque node each way instead of
# unrolling K^2 offsets into its graph (which took 77 s to compile trionet_small's all-local net and
# then ran it at 0.49x eager speed). Eager mode runs the same two functions through a plain
# autograd.Function (``_ShiftedLocalAttention``): a custom op's first call imports torch._dynamo
# (1.2 s and 80 MB per process, measured), which eager training, export and tests need not pay.
_shifted_op = torch.library.custom_op("trionet_dsl::shifted_local_attention", _shifted_forward, mutates_args=())
_shifted_backward_op = torch.library.custom_op(
    "trionet_dsl::shifted_local_attention_backward", _shifted_backward, mutates_args=()
)


@_shifted_op.register_fake
def _shifted_fake(
    q: torch.Tensor, kv_in: torch.Tensor, rel_row: torch.Tensor, rel_col: torch.Tensor, heads: int, span: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, w, height, width = q.shape
    p2 = 2 * (span // 2)
    padded = kv_in.new_empty(n, kv_in.shape[1], height + p2, width + p2)
    return q.new_empty(n, w, height, width), q.new_empty(span * span, n, heads, height, width), padded


@_shifted_backward_op.register_fake
def _shifted_backward_fake(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    padded: torch.Tensor,
    rel_row: torch.Tensor,
    rel_col: torch.Tensor,
    attn: torch.Tensor,
    span: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        q.new_empty(q.shape),
        padded.new_empty(padded.shape),
        rel_row.new_empty(rel_row.shape),
        rel_col.new_empty(rel_col.shape),
    )


def _shifted_save(
    ctx: Any, q: torch.Tensor, rel_row: torch.Tensor, rel_col: torch.Tensor, span: int, output: Any
) -> None:
    """What both wrappers keep for backward: q, the embeddings, and forward's softmax weights and padded k/v."""
    _, attn, padded = output
    ctx.save_for_backward(q, padded, rel_row, rel_col, attn)
    ctx.span = span


def _shifted_grads(ctx: Any, grad_out: torch.Tensor, backward: Any) -> tuple[torch.Tensor | None, ...]:
    """Both wrappers' backward: ``backward`` (the function or its custom op) on the saved tensors; k/v's
    gradient is the interior of the padded one, a view."""
    q, padded, rel_row, rel_col, attn = ctx.saved_tensors
    g_q, g_padded, g_row, g_col = backward(grad_out.contiguous(), q, padded, rel_row, rel_col, attn, ctx.span)
    pad, (height, width) = ctx.span // 2, q.shape[2:]
    return g_q, g_padded[..., pad : pad + height, pad : pad + width], g_row, g_col, None, None


def _shifted_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    q, _, rel_row, rel_col, _, span = inputs
    _shifted_save(ctx, q, rel_row, rel_col, span, output)
    ctx.mark_non_differentiable(*output[1:])  # for backward only: no zero-filled gradients for them
    ctx.set_materialize_grads(False)


def _shifted_grad(ctx: Any, grad_out: torch.Tensor, *_unused: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    return _shifted_grads(ctx, grad_out, _shifted_backward_op)


_shifted_op.register_autograd(_shifted_grad, setup_context=_shifted_setup)


class _ShiftedLocalAttention(torch.autograd.Function):
    """The offset loop in eager mode (see above): the same forward and backward functions."""

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        kv_in: torch.Tensor,
        rel_row: torch.Tensor,
        rel_col: torch.Tensor,
        heads: int,
        span: int,
    ) -> torch.Tensor:
        output = _shifted_forward(q, kv_in, rel_row, rel_col, heads, span)
        _shifted_save(ctx, q, rel_row, rel_col, span, output)
        return output[0]

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return _shifted_grads(ctx, grad_out, _shifted_backward)


def _offset_dots(qh: torch.Tensor, kp: torch.Tensor, span: int) -> torch.Tensor:
    """``q . k`` for each of the K^2 offsets: qh (N, h, d, H, W), padded kp -> (K^2, N, h, H, W)."""
    n, heads, _, height, width = qh.shape
    out = qh.new_empty(span * span, n, heads, height, width)
    prod = torch.empty_like(qh)  # one reused buffer: no allocation (and page faults) per offset
    for a in range(span):
        for b in range(span):
            torch.mul(qh, kp[..., a : a + height, b : b + width], out=prod)
            torch.sum(prod, 2, out=out[a * span + b])
    return out


def _add_rel_and_mask(
    logits: torch.Tensor, qh: torch.Tensor, rel_row: torch.Tensor, rel_col: torch.Tensor, span: int
) -> None:
    """In place: add ``q . r_row[a] + q . r_col[b]`` and set zero-padded neighbours to -inf."""
    _, n, heads, height, width = logits.shape
    dr, pad = rel_row.shape[1], span // 2
    row = torch.einsum("nhdxy,hda->anhxy", qh[:, :, :dr], rel_row)
    col = torch.einsum("nhdxy,hdb->bnhxy", qh[:, :, dr:], rel_col)
    l6 = logits.view(span, span, n, heads, height, width)
    l6 += row[:, None] + col[None]
    for a in range(span):  # offset a - pad reads rows outside [0, H) at the top or bottom border
        off = a - pad
        if off < 0:
            l6[a, :, :, :, : min(-off, height)] = float("-inf")
        elif off > 0:
            l6[a, :, :, :, max(height - off, 0) :] = float("-inf")
        if off < 0:
            l6[:, a, :, :, :, : min(-off, width)] = float("-inf")
        elif off > 0:
            l6[:, a, :, :, :, max(width - off, 0) :] = float("-inf")


@torch.jit.unused
def _shifted(
    q: torch.Tensor, kv_in: torch.Tensor, rel_row: torch.Tensor, rel_col: torch.Tensor, heads: int, span: int
) -> torch.Tensor:
    if torch.compiler.is_compiling():
        return _shifted_op(q, kv_in, rel_row, rel_col, heads, span)[0]
    out: torch.Tensor = _ShiftedLocalAttention.apply(q, kv_in, rel_row, rel_col, heads, span)
    return out


def local_attention(
    x: torch.Tensor,
    wq: torch.Tensor,
    wk: torch.Tensor,
    wv: torch.Tensor,
    rel_row: torch.Tensor,
    rel_col: torch.Tensor,
    heads: int,
    span: int,
    stride: int,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """``local_attention_qkv`` with the three projections apart: x (N, C, H, W); wq/wk/wv (w, C)."""
    return local_attention_qkv(x, torch.cat([wq, wk, wv], 0), rel_row, rel_col, heads, span, stride, chunk_rows)


def local_attention_qkv(
    x: torch.Tensor,
    wqkv: torch.Tensor,
    rel_row: torch.Tensor,
    rel_col: torch.Tensor,
    heads: int,
    span: int,
    stride: int,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Functional SASA core shared by the super and plain modules.

    x (N, C, H, W); wqkv (3w, C), the q, k and v projections' rows one after another (the supernet
    reads them in one copy, see ``Take.stack``); rel_row (h, ceil(d/2), K); rel_col (h, floor(d/2), K).
    Returns (N, w, ceil(H/stride), ceil(W/stride)), channels head-major. ``chunk_rows`` picks the
    formulation, all giving the same numbers: ``0`` = ``local_attention_unfold`` (K^2 copies of k
    and v); ``SHIFTED`` (-1) = the offset loop (``_shifted_forward``, no K^2 copies, faster
    than the unfold on CPU at stage-1 size); ``r > 0`` = bands of ``r`` rows (``_BandedLocalAttention``);
    ``None`` = ``SHIFTED`` from ``SHIFTED_MIN_PIXELS`` up or past ``CHUNK_BYTES`` (see
    ``chunk_rows_for``), else the unfold.
    Under TorchScript and tracing (export) it is always ``local_attention_unfold``.
    """
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return local_attention_unfold_qkv(x, wqkv, rel_row, rel_col, heads, span, stride)
    n, _, height, width = x.shape
    w = wqkv.shape[0] // 3
    if chunk_rows == SHIFTED or (chunk_rows is None and height * width >= SHIFTED_MIN_PIXELS):
        rows, chunk_rows = 0, SHIFTED
    else:
        rows = chunk_rows_for(n, w, span, height, width, x.element_size(), chunk_rows)
        if rows >= height:
            return local_attention_unfold_qkv(x, wqkv, rel_row, rel_col, heads, span, stride)
    qkv = F.conv2d(x, wqkv[:, :, None, None]).contiguous()
    q, kv_in = qkv.split([w, 2 * w], dim=1)
    # the hand-written cores compute in q's dtype: under autocast q is bf16/fp16 while the embeddings
    # stay fp32 parameters, and neither their backward (run outside autocast) nor the compiled custom
    # op (which autocast does not reach) would cast them
    rel_row, rel_col = rel_row.to(q.dtype), rel_col.to(q.dtype)
    if chunk_rows is None or chunk_rows == SHIFTED:  # None here: past CHUNK_BYTES
        out = _shifted(q, kv_in, rel_row, rel_col, heads, span)
    else:
        out = _banded(q, kv_in, rel_row, rel_col, heads, span, rows)
    if stride > 1:
        out = F.avg_pool2d(out, stride, stride, ceil_mode=True)
    return out


def local_attention_unfold(
    x: torch.Tensor,
    wq: torch.Tensor,
    wk: torch.Tensor,
    wv: torch.Tensor,
    rel_row: torch.Tensor,
    rel_col: torch.Tensor,
    heads: int,
    span: int,
    stride: int,
) -> torch.Tensor:
    """Today's formulation: one unfold of K^2 copies of k and v over the whole input.

    x (N, C, H, W); wq/wk/wv (w, C); rel_row (h, ceil(d/2), K); rel_col (h, floor(d/2), K).
    Returns (N, w, ceil(H/stride), ceil(W/stride)), channels head-major.
    """
    return local_attention_unfold_qkv(x, torch.cat([wq, wk, wv], 0), rel_row, rel_col, heads, span, stride)


def local_attention_unfold_qkv(
    x: torch.Tensor,
    wqkv: torch.Tensor,
    rel_row: torch.Tensor,
    rel_col: torch.Tensor,
    heads: int,
    span: int,
    stride: int,
) -> torch.Tensor:
    """``local_attention_unfold`` with the projections as one (3w, C) weight."""
    n, _, height, width = x.shape
    w = wqkv.shape[0] // 3
    d = w // heads
    dr = rel_row.shape[1]
    kk = span * span
    hw = height * width
    pad = span // 2
    # NCHW-contiguous: under channels_last, unfold and the broadcast products below run 3-4x slower
    qkv = F.conv2d(x, wqkv[:, :, None, None]).contiguous()
    # split/unbind, not indexing: their backward concatenates, where slicing's backward
    # zero-fills a full-size gradient per slice (measured: a third of the step time)
    q, kv_in = qkv.split([w, 2 * w], dim=1)
    q = q.reshape(n, heads, d, 1, hw)
    # one unfold for keys and values: (N, 2w * K^2, HW), channel-major, then row offset, then column offset
    k, v = F.unfold(kv_in, span, padding=pad).reshape(n, 2, heads, d, kk, hw).unbind(1)
    # broadcast-multiply-and-sum: an einsum here lowers to HW tiny (1 x d)(d x K^2) matmuls, slower on CPU
    logits = (q * k).sum(2)  # (N, h, K^2, HW)
    row = torch.einsum("nhdl,hda->nhal", q[:, :, :dr, 0], rel_row)  # (N, h, K, HW)
    col = torch.einsum("nhdl,hdb->nhbl", q[:, :, dr:, 0], rel_col)
    rel = (row[:, :, :, None, :] + col[:, :, None, :, :]).reshape(n, heads, kk, hw)  # index a*K + b, as unfold
    valid = F.unfold(torch.ones(1, 1, height, width, dtype=x.dtype, device=x.device), span, padding=pad)
    logits = (logits + rel).masked_fill(valid.reshape(1, 1, kk, hw) < 0.5, float("-inf"))
    attn = torch.softmax(logits, dim=2)  # the centre is always valid: no all -inf rows
    out = (attn[:, :, None] * v).sum(3).reshape(n, w, height, width)
    if stride > 1:
        out = F.avg_pool2d(out, stride, stride, ceil_mode=True)
    return out


def _init_proj(t: torch.Tensor, fan_in: int, head_dim: int = 1) -> None:
    # head_dim > 1 for Wq: the 1/sqrt(d) softmax temperature is put into the init, not the forward
    nn.init.normal_(t, std=1.0 / math.sqrt(fan_in * head_dim))


def _init_rel(t: torch.Tensor) -> None:
    # std 1: the position logit q . r gets unit variance at init, like q . k (see module docstring)
    nn.init.normal_(t, std=1.0)


def _lead(t: torch.Tensor, heads: int, channels: int) -> torch.Tensor:
    """``t[:heads, :channels]``, without a slicing op (and its autograd node) where it is all of ``t``."""
    if heads < t.shape[0]:
        t = t[:heads]
    return t[:, :channels] if channels < t.shape[1] else t


def _check_span(span: int) -> None:
    if span < 1 or span % 2 == 0:
        raise ValueError(f"local attention span must be odd and >= 1, got {span}")


class LocalAttention2d(nn.Module):
    """A plain SASA layer of fixed size: what extraction and ``build`` produce.

    Parameters: ``wq, wk, wv`` (width, in_channels), ``rel_row`` (heads, ceil(d/2), span),
    ``rel_col`` (heads, floor(d/2), span). TorchScript- and ONNX-exportable (scripted and
    exported with the one-unfold formulation). ``chunk_rows`` picks the formulation in eager
    mode (``None``: by size; ``0``: one unfold; ``r``: bands of ``r`` rows; see ``local_attention``).
    """

    def __init__(
        self, in_channels: int, width: int, heads: int, span: int, stride: int = 1, chunk_rows: int | None = None
    ) -> None:
        super().__init__()
        if heads < 1 or width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        _check_span(span)
        self.in_channels, self.width = in_channels, width
        self.heads, self.span, self.stride = heads, span, stride
        self.chunk_rows = chunk_rows
        d = width // heads
        dr, dc = split_halves(d)
        self.wq = nn.Parameter(torch.empty(width, in_channels))
        self.wk = nn.Parameter(torch.empty(width, in_channels))
        self.wv = nn.Parameter(torch.empty(width, in_channels))
        self.rel_row = nn.Parameter(torch.empty(heads, dr, span))
        self.rel_col = nn.Parameter(torch.empty(heads, dc, span))
        _init_proj(self.wq, in_channels, d)
        _init_proj(self.wk, in_channels)
        _init_proj(self.wv, in_channels)
        _init_rel(self.rel_row)
        _init_rel(self.rel_col)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_attention(
            x,
            self.wq,
            self.wk,
            self.wv,
            self.rel_row,
            self.rel_col,
            self.heads,
            self.span,
            self.stride,
            self.chunk_rows,
        )

    @staticmethod
    def param_count(in_channels: int, width: int, heads: int, span: int) -> int:
        """``3 C_in w + w K``: the q/k/v projections and ``K`` offsets x ``d`` channels per head."""
        return local_attention_params(in_channels, width, heads, span)

    @staticmethod
    def macs(height: int, width_px: int, in_channels: int, width: int, heads: int, span: int, batch: int = 1) -> int:
        """``N H W (3 C_in w + 2 K^2 w + K w)`` (see the module docstring)."""
        return local_attention_macs(height, width_px, in_channels, width, heads, span, batch)


class SuperLocalAttention(GridOutputs, nn.Module):
    """Every (width, heads) of a block's local operator in one set of weights (see ``ops.heads``).

    ``sharing="multihead"``: ``wq/wk/wv`` (H*D, in_max) read as an H x D grid, ``rel_row``
    (H, ceil(D/2), K), ``rel_col`` (H, floor(D/2), K). ``sharing="prefix"``: ``wq/wk/wv``
    (W, in_max) and one flat ``rel`` (W, K) whose per-head rows split into row/column halves.
    """

    def __init__(
        self,
        in_max: int,
        widths: tuple[int, ...],
        heads: tuple[int, ...],
        span: int,
        stride: int = 1,
        sharing: str = "multihead",
        chunk_rows: int | None = None,
    ) -> None:
        super().__init__()
        _check_span(span)
        self.chunk_rows = chunk_rows
        self.in_max, self.widths, self.head_choices = in_max, tuple(widths), tuple(heads)
        self.span, self.stride, self.sharing = span, stride, check_mode(sharing)
        self.grid = grid_dims(self.widths, self.head_choices)
        big_h, big_d = self.grid
        rows = stored_rows(self.widths, self.head_choices, sharing)
        self.wq = nn.Parameter(torch.empty(rows, in_max))
        self.wk = nn.Parameter(torch.empty(rows, in_max))
        self.wv = nn.Parameter(torch.empty(rows, in_max))
        _init_proj(self.wq, in_max, big_d)
        _init_proj(self.wk, in_max)
        _init_proj(self.wv, in_max)
        if sharing == "multihead":
            dr, dc = split_halves(big_d)
            self.rel_row = nn.Parameter(torch.empty(big_h, dr, span))
            self.rel_col = nn.Parameter(torch.empty(big_h, dc, span))
            _init_rel(self.rel_row)
            _init_rel(self.rel_col)
        else:
            self.rel = nn.Parameter(torch.empty(max(self.widths), span))
            _init_rel(self.rel)

    def _take(self, in_channels: int, width: int, heads: int) -> tuple[Take, int, int]:
        """How (width, heads) over ``in_channels`` inputs reads wq/wk/wv, and its row/column halves."""

        def build() -> tuple[Take, int, int]:
            if in_channels > self.in_max:
                raise ValueError(f"input has {in_channels} channels, the operator was built for {self.in_max}")
            d = check_sub(self.sharing, self.grid, max(self.widths), width, heads)
            return Take(row_axis(self.sharing, self.grid, width, heads), lead(in_channels)), *split_halves(d)

        return cached(self, (in_channels, width, heads), build)

    def _rel(self, dr: int, dc: int, width: int, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rel_row, rel_col) of (width, heads), of ``dr``/``dc`` channels per head."""
        if self.sharing == "multihead":
            return _lead(self.rel_row, heads, dr), _lead(self.rel_col, heads, dc)
        r = self.rel[:width].reshape(heads, width // heads, self.span)
        return r[:, :dr], r[:, dr:]

    def _tensors(self, in_channels: int, width: int, heads: int) -> list[torch.Tensor]:
        """[wq, wk, wv, rel_row, rel_col] of (width, heads): one read per weight (see ``Take``)."""
        take, dr, dc = self._take(in_channels, width, heads)
        return [take(self.wq), take(self.wk), take(self.wv), *self._rel(dr, dc, width, heads)]

    def weights(self, in_channels: int, width: int, heads: int) -> dict[str, torch.Tensor]:
        """The sliced tensors sub-operator (width, heads) computes with, as the core takes them."""
        names = ("wq", "wk", "wv", "rel_row", "rel_col")
        return dict(zip(names, self._tensors(in_channels, width, heads), strict=True))

    def forward(self, x: torch.Tensor, width: int, heads: int) -> torch.Tensor:
        """Sub-operator (width, heads) on x (N, C_in <= in_max, H, W); costs only that sub-operator."""
        take, dr, dc = self._take(x.shape[1], width, heads)
        rel_row, rel_col = self._rel(dr, dc, width, heads)
        wqkv = take.stack([self.wq, self.wk, self.wv])  # one copy, where reading each and concatenating made two
        return local_attention_qkv(x, wqkv, rel_row, rel_col, heads, self.span, self.stride, self.chunk_rows)

    def extract(self, width: int, heads: int, in_channels: int | None = None) -> LocalAttention2d:
        """A plain copy (cloned weights) of sub-operator (width, heads).

        ``in_channels`` defaults to ``width``: in a bottleneck the operator's input is the
        1x1 reduce's output, which has the sub-network's width.
        """
        cin = width if in_channels is None else in_channels
        m = LocalAttention2d(cin, width, heads, self.span, self.stride, self.chunk_rows)
        with torch.no_grad():
            for name, t in self.weights(cin, width, heads).items():
                getattr(m, name).copy_(t)
        return m.train(self.training)

    def head_weights(self, i: int, width: int, heads: int) -> dict[str, torch.Tensor]:
        """What head ``i`` of sub-operator (width, heads) reads: q/k/v rows (d, in_max) and embeddings.

        Under Multi-head Sharing these are the leading ``d`` channels of grid row ``i`` in every
        sub-operator that has head ``i``.
        """
        if not 0 <= i < heads:
            raise ValueError(f"head {i} not in a {heads}-head operator")
        d = width // heads
        t = self.weights(self.in_max, width, heads)
        return {
            "wq": t["wq"][i * d : (i + 1) * d],
            "wk": t["wk"][i * d : (i + 1) * d],
            "wv": t["wv"][i * d : (i + 1) * d],
            "rel_row": t["rel_row"][i],
            "rel_col": t["rel_col"][i],
        }

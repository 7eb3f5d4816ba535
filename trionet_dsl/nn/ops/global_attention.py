"""Global (all-to-all) multi-head self-attention with 2-D relative position logits, as in
BoTNet's MHSA layer (Srinivas et al. 2021, "Bottleneck Transformers for Visual Recognition").

Every pixel attends to every pixel of the feature map. Per head, with ``q = Wq x``,
``k = Wk x``, ``v = Wv x`` (1x1, no bias) and query ``o = (i, j)``, key ``p = (a, b)``:

    y_o = sum_p softmax_p( q_o . k_p + q_o . r_{a-i, b-j} ) v_p,   r_{a-i, b-j} = rh_{a-i} + rw_{b-j}

(BoTNet's content-content plus content-position logits, ``r = r_h + r_w``). The embeddings
are stored per head, ``rh (h, d, 2 max_h - 1)`` and ``rw (h, d, 2 max_w - 1)``, for the
feature map the layer is built for (``max_h x max_w``, the block's input); a smaller map
at run time uses the central offsets, a larger one raises ``ValueError``. BoTNet shares
one ``rh``/``rw`` between its heads; per-head embeddings are what Multi-head Sharing needs
(each head keeps its own position table in every sub-network) and cost ``h`` times the
shared ones' ``d (2H - 1 + 2W - 1)`` parameters (0.2% of BoTNet-50).

As in ``local_attention`` the logits are not scaled; the ``1/sqrt(d)`` temperature is in
the init (``Wq`` std ``1/sqrt(C_in d)``, ``Wk``/``Wv`` ``1/sqrt(C_in)``, ``rh``/``rw``
``1/sqrt(2)`` so the position term has about unit variance). A stride ``s > 1`` is an
``s x s`` average pool after the attention (``ceil_mode=True``), as BoTNet does.

Multiply-adds (MACs), input ``N x C_in x H x W``, ``w`` output channels, any ``h``::

    N * H * W * (3 * C_in * w  +  2 * H * W * w  +  (H + W) * w)

projections; ``q . k`` and ``attn . v`` over all ``HW`` keys; ``q . rh`` (``H`` row offsets)
and ``q . rw`` (``W`` column offsets) per head channel — their ``HW`` sums are additions.
Pooling and softmax are not counted. Parameters: ``3 C_in w + w (2 max_h - 1 + 2 max_w - 1)``.

Memory: the logits are ``h (HW)^2`` floats per image, so the operator is meant for late,
small feature maps; the language refuses a ``global`` whose logits would exceed a cap
(:func:`trionet_dsl.space.op_costs.global_check`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.nn.ops.axial_attention import relative_index
from trionet_dsl.nn.ops.heads import (
    GridOutputs,
    Take,
    cached,
    check_mode,
    check_sub,
    grid_dims,
    lead,
    row_axis,
    stored_rows,
)
from trionet_dsl.space.op_costs import global_attention_macs, global_attention_params


def global_attention(
    x: torch.Tensor,
    wq: torch.Tensor,
    wk: torch.Tensor,
    wv: torch.Tensor,
    rh: torch.Tensor,
    rw: torch.Tensor,
    heads: int,
    stride: int,
    index_h: torch.Tensor,
    index_w: torch.Tensor,
) -> torch.Tensor:
    """``global_attention_qkv`` with the three projections apart: w* (w, C)."""
    return global_attention_qkv(x, torch.cat([wq, wk, wv], 0), rh, rw, heads, stride, index_h, index_w)


def global_attention_qkv(
    x: torch.Tensor,
    wqkv: torch.Tensor,
    rh: torch.Tensor,
    rw: torch.Tensor,
    heads: int,
    stride: int,
    index_h: torch.Tensor,
    index_w: torch.Tensor,
) -> torch.Tensor:
    """Functional core: x (N, C, H, W); wqkv (3w, C), q, k and v rows one after another; rh (h, d,
    2 max_h - 1); rw (h, d, 2 max_w - 1)."""
    n, _, height, width_px = x.shape
    if height > index_h.shape[0] or width_px > index_w.shape[0]:
        raise ValueError(
            f"global attention built for {index_h.shape[0]}x{index_w.shape[0]} feature maps got "
            f"{height}x{width_px}; build it for the larger map"
        )
    w = wqkv.shape[0] // 3
    d = w // heads
    hw = height * width_px
    qkv = F.conv2d(x, wqkv[:, :, None, None])  # (N, 3w, H, W)
    qkv = qkv.reshape(n, 3, heads, d, hw).permute(1, 0, 2, 4, 3)  # (3, N, h, HW, d)
    q, k, v = qkv.unbind(0)
    eh = rh[:, :, index_h[:height, :height]]  # (h, d, H_o, H_p)
    ew = rw[:, :, index_w[:width_px, :width_px]]  # (h, d, W_o, W_p)
    q5 = q.reshape(n, heads, height, width_px, d)
    rel_h = torch.einsum("nhxyd,hdxa->nhxya", q5, eh)  # (N, h, H, W, H_p)
    rel_w = torch.einsum("nhxyd,hdyb->nhxyb", q5, ew)  # (N, h, H, W, W_p)
    rel = (rel_h[:, :, :, :, :, None] + rel_w[:, :, :, :, None, :]).reshape(n, heads, hw, hw)
    attn = torch.softmax(torch.matmul(q, k.transpose(2, 3)) + rel, dim=3)
    out = torch.matmul(attn, v)  # (N, h, HW, d)
    y = out.permute(0, 1, 3, 2).reshape(n, w, height, width_px)
    if stride > 1:
        y = F.avg_pool2d(y, stride, stride, ceil_mode=True)
    return y


def _init(p: torch.Tensor, name: str, fan_in: int, d: int) -> None:
    std = {"wq": 1.0 / math.sqrt(fan_in * d), "wk": 1.0 / math.sqrt(fan_in), "wv": 1.0 / math.sqrt(fan_in)}
    nn.init.normal_(p, std=std.get(name, 1.0 / math.sqrt(2.0)))


_NAMES = ("wq", "wk", "wv", "rh", "rw")


class GlobalAttention2d(nn.Module):
    """A plain global-attention operator of fixed size (TorchScript- and ONNX-exportable).

    ``wq/wk/wv`` (width, in_channels); ``rh`` (heads, d, 2 max_h - 1); ``rw`` (heads, d, 2 max_w - 1).
    """

    if TYPE_CHECKING:  # buffers registered in __init__
        index_h: torch.Tensor
        index_w: torch.Tensor

    def __init__(self, in_channels: int, width: int, heads: int, max_hw: tuple[int, int], stride: int = 1) -> None:
        super().__init__()
        if heads < 1 or width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        self.in_channels, self.width, self.heads, self.stride = in_channels, width, heads, stride
        self.max_hw = (int(max_hw[0]), int(max_hw[1]))
        d = width // heads
        self.wq = nn.Parameter(torch.empty(width, in_channels))
        self.wk = nn.Parameter(torch.empty(width, in_channels))
        self.wv = nn.Parameter(torch.empty(width, in_channels))
        self.rh = nn.Parameter(torch.empty(heads, d, 2 * self.max_hw[0] - 1))
        self.rw = nn.Parameter(torch.empty(heads, d, 2 * self.max_hw[1] - 1))
        for name in _NAMES:
            _init(getattr(self, name), name, in_channels, d)
        self.register_buffer("index_h", relative_index(self.max_hw[0]), persistent=False)
        self.register_buffer("index_w", relative_index(self.max_hw[1]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_attention(
            x, self.wq, self.wk, self.wv, self.rh, self.rw, self.heads, self.stride, self.index_h, self.index_w
        )

    @staticmethod
    def param_count(in_channels: int, width: int, heads: int, max_hw: tuple[int, int]) -> int:
        """``3 C_in w + w (2 max_h - 1 + 2 max_w - 1)``."""
        return global_attention_params(in_channels, width, heads, max_hw)

    @staticmethod
    def macs(height: int, width_px: int, in_channels: int, width: int, heads: int, batch: int = 1) -> int:
        """``N H W (3 C_in w + 2 H W w + (H + W) w)`` (see the module docstring)."""
        return global_attention_macs(height, width_px, in_channels, width, heads, batch)


class SuperGlobalAttention(GridOutputs, nn.Module):
    """Every (width, heads) of a block's global operator in one set of weights (see ``ops.heads``).

    ``sharing="multihead"``: projections of H*D rows read as an H x D grid, embeddings
    (H, D, offsets); ``"prefix"``: W rows, flat embeddings (W, offsets).
    """

    if TYPE_CHECKING:  # registered by name in __init__
        index_h: torch.Tensor
        index_w: torch.Tensor
        wq: torch.Tensor
        wk: torch.Tensor
        wv: torch.Tensor
        rh: torch.Tensor
        rw: torch.Tensor

    def __init__(
        self,
        in_max: int,
        widths: tuple[int, ...],
        heads: tuple[int, ...],
        max_hw: tuple[int, int],
        stride: int = 1,
        sharing: str = "multihead",
    ) -> None:
        super().__init__()
        self.in_max, self.widths, self.head_choices = in_max, tuple(widths), tuple(heads)
        self.max_hw, self.stride, self.sharing = (int(max_hw[0]), int(max_hw[1])), stride, check_mode(sharing)
        self.grid = grid_dims(self.widths, self.head_choices)
        big_h, big_d = self.grid
        rows = stored_rows(self.widths, self.head_choices, sharing)
        for name in _NAMES:
            if name.startswith("w"):
                shape: tuple[int, ...] = (rows, in_max)
            else:
                offsets = 2 * self.max_hw[0 if name == "rh" else 1] - 1
                shape = (big_h, big_d, offsets) if sharing == "multihead" else (rows, offsets)
            p = nn.Parameter(torch.empty(*shape))
            _init(p, name, in_max, big_d)
            setattr(self, name, p)
        self.register_buffer("index_h", relative_index(self.max_hw[0]), persistent=False)
        self.register_buffer("index_w", relative_index(self.max_hw[1]), persistent=False)

    def _take(self, in_channels: int, width: int, heads: int) -> tuple[Take, int]:
        """How (width, heads) over ``in_channels`` inputs reads wq/wk/wv (see ``Take``), and its head dim."""

        def build() -> tuple[Take, int]:
            if in_channels > self.in_max:
                raise ValueError(f"input has {in_channels} channels, the operator was built for {self.in_max}")
            d = check_sub(self.sharing, self.grid, max(self.widths), width, heads)
            return Take(row_axis(self.sharing, self.grid, width, heads), lead(in_channels)), d

        return cached(self, (in_channels, width, heads), build)

    def _tensors(self, in_channels: int, width: int, heads: int) -> list[torch.Tensor]:
        take, d = self._take(in_channels, width, heads)
        return [take(self.wq), take(self.wk), take(self.wv), *self._rel(d, width, heads)]

    def _rel(self, d: int, width: int, heads: int) -> list[torch.Tensor]:
        """[rh, rw] of (width, heads), heads of ``d`` channels."""
        out: list[torch.Tensor] = []
        for t in (self.rh, self.rw):
            if self.sharing == "multihead":
                t = t[:heads] if heads < t.shape[0] else t
                out.append(t[:, :d] if d < t.shape[1] else t)
            else:
                out.append(t[:width].reshape(heads, d, -1))
        return out

    def weights(self, in_channels: int, width: int, heads: int) -> list[torch.Tensor]:
        """Sliced [wq, wk, wv, rh, rw] of sub-operator (width, heads)."""
        return self._tensors(in_channels, width, heads)

    def forward(self, x: torch.Tensor, width: int, heads: int) -> torch.Tensor:
        take, d = self._take(x.shape[1], width, heads)
        rh, rw = self._rel(d, width, heads)
        wqkv = take.stack([self.wq, self.wk, self.wv])  # one copy (see ``Take.stack``)
        return global_attention_qkv(x, wqkv, rh, rw, heads, self.stride, self.index_h, self.index_w)

    def extract(self, width: int, heads: int, in_channels: int | None = None) -> GlobalAttention2d:
        """A plain copy (cloned weights) of (width, heads); ``in_channels`` defaults to ``width`` (bottleneck)."""
        cin = width if in_channels is None else in_channels
        m = GlobalAttention2d(cin, width, heads, self.max_hw, self.stride)
        with torch.no_grad():
            for name, t in zip(_NAMES, self.weights(cin, width, heads), strict=True):
                getattr(m, name).copy_(t)
        return m.train(self.training)

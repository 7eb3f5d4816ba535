"""The built-in operators' modules, as the operator registry (:mod:`trionet_dsl.lang.operators`)
names them: for each kind a *plain* builder (one size, fresh weights) and a *super* builder
(every width and head count of a block in one set of weights).

A super module's interface, for every kind: ``forward(x, width, heads)``, ``output_rows``
(outputs the BN after it stores), ``output_index(width, heads)`` (where those outputs sit
among them; ``None``: the leading ``width``) and ``extract(width, heads)`` (a plain copy).
"""

from __future__ import annotations

import torch
from torch import nn

from trionet_dsl.lang.ir import Op
from trionet_dsl.lang.operators import head_count
from trionet_dsl.nn.ops.axial_attention import AxialAttention2d, SuperAxialAttention
from trionet_dsl.nn.ops.global_attention import GlobalAttention2d, SuperGlobalAttention
from trionet_dsl.nn.ops.local_attention import LocalAttention2d, SuperLocalAttention
from trionet_dsl.nn.ops.sliced import SuperConv2d
from trionet_dsl.space.op_costs import axial_options, groups_of


class SuperConvOp(nn.Module):
    """The conv choice of a block, with the attention operators' interface: ``forward(x, width, heads)``."""

    def __init__(self, in_max: int, out_max: int, kernel: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        self.conv = SuperConv2d(in_max, out_max, kernel, stride, groups)

    def forward(self, x: torch.Tensor, width: int, heads: int | None = None) -> torch.Tensor:
        return self.conv(x, width)

    @property
    def output_rows(self) -> int:
        return self.conv.out_max

    def output_index(self, width: int, heads: int | None = None) -> torch.Tensor | None:
        """Conv outputs are plain channels: the layers after read the leading ``width``; a grouped
        conv's sit at the first ``width/G`` positions of every group (``SuperConv2d.output_index``)."""
        return self.conv.output_index(width)

    def extract(self, width: int, heads: int | None = None, in_channels: int | None = None) -> nn.Conv2d:
        """Plain conv of (width, heads); ``in_channels`` defaults to ``width`` (bottleneck), as for attention."""
        return self.conv.extract(width, in_channels=width if in_channels is None else in_channels)


def conv_plain(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int, in_channels: int | None = None
) -> nn.Module:
    kernel, cin = op.require("kernel"), width if in_channels is None else in_channels
    conv = nn.Conv2d(cin, width, kernel, stride, kernel // 2, bias=False, groups=groups_of(op))
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def conv_super(
    op: Op,
    *,
    in_max: int,
    widths: tuple[int, ...],
    heads: tuple[int, ...],
    in_hw: tuple[int, int],
    stride: int,
    sharing: str,
) -> nn.Module:
    return SuperConvOp(in_max, max(widths), op.require("kernel"), stride, groups_of(op))


def local_plain(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int, in_channels: int | None = None
) -> nn.Module:
    cin = width if in_channels is None else in_channels
    return LocalAttention2d(cin, width, head_count(heads), op.require("span"), stride)


def local_super(
    op: Op,
    *,
    in_max: int,
    widths: tuple[int, ...],
    heads: tuple[int, ...],
    in_hw: tuple[int, int],
    stride: int,
    sharing: str,
) -> nn.Module:
    return SuperLocalAttention(in_max, widths, heads, op.require("span"), stride, sharing)


def axial_plain(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int, in_channels: int | None = None
) -> nn.Module:
    ratio, shared, bn = axial_options(op)
    cin = width if in_channels is None else in_channels
    return AxialAttention2d(cin, width, head_count(heads), max(in_hw), op.span or 0, stride, ratio, shared, bn)


def axial_super(
    op: Op,
    *,
    in_max: int,
    widths: tuple[int, ...],
    heads: tuple[int, ...],
    in_hw: tuple[int, int],
    stride: int,
    sharing: str,
) -> nn.Module:
    ratio, shared, bn = axial_options(op)
    return SuperAxialAttention(in_max, widths, heads, max(in_hw), op.span or 0, stride, sharing, ratio, shared, bn)


def global_plain(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int, in_channels: int | None = None
) -> nn.Module:
    return GlobalAttention2d(width if in_channels is None else in_channels, width, head_count(heads), in_hw, stride)


def global_super(
    op: Op,
    *,
    in_max: int,
    widths: tuple[int, ...],
    heads: tuple[int, ...],
    in_hw: tuple[int, int],
    stride: int,
    sharing: str,
) -> nn.Module:
    return SuperGlobalAttention(in_max, widths, heads, in_hw, stride, sharing)

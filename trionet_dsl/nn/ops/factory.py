"""Operator construction by kind: the one place that maps DSL operators to modules."""

from __future__ import annotations

import torch
from torch import nn

from trionet_dsl.nn.ops.axial_attention import AxialAttention2d, SuperAxialAttention
from trionet_dsl.nn.ops.local_attention import LocalAttention2d, SuperLocalAttention
from trionet_dsl.nn.ops.sliced import SuperConv2d


class SuperConvOp(nn.Module):
    """The conv choice of a block, with the attention operators' interface: ``forward(x, width, heads)``."""

    def __init__(self, in_max: int, out_max: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = SuperConv2d(in_max, out_max, kernel, stride)

    def forward(self, x: torch.Tensor, width: int, heads: int | None = None) -> torch.Tensor:
        return self.conv(x, width)

    @property
    def output_rows(self) -> int:
        return self.conv.out_max

    def output_index(self, width: int, heads: int | None = None) -> None:
        """Conv outputs are plain channels: the layers after read the leading ``width``."""
        return None

    def extract(self, width: int, heads: int | None = None, in_channels: int | None = None) -> nn.Conv2d:
        """Plain conv of (width, heads); ``in_channels`` defaults to ``width`` (bottleneck), as for attention."""
        return self.conv.extract(width, in_channels=width if in_channels is None else in_channels)


def plain_op(kind: str, *, width: int, heads: int | None, stride: int, kernel: int | None, span: int | None,
             max_len: int) -> nn.Module:
    """A standalone operator (input channels = width) with fresh weights."""
    if kind == "conv":
        conv = nn.Conv2d(width, width, kernel, stride, kernel // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        return conv
    if kind == "local":
        return LocalAttention2d(width, width, heads, span, stride)
    if kind == "axial":
        return AxialAttention2d(width, width, heads, max_len, span or 0, stride)
    raise ValueError(f"unknown operator kind {kind!r}")


def super_op(kind: str, *, in_max: int, widths: tuple[int, ...], heads: tuple[int, ...], stride: int,
             kernel: int | None, span: int | None, max_len: int, sharing: str) -> nn.Module:
    """The supernet's operator for every (width, heads) of one block's choice."""
    if kind == "conv":
        return SuperConvOp(in_max, max(widths), kernel, stride)
    if kind == "local":
        return SuperLocalAttention(in_max, widths, heads, span, stride, sharing)
    if kind == "axial":
        return SuperAxialAttention(in_max, widths, heads, max_len, span or 0, stride, sharing)
    raise ValueError(f"unknown operator kind {kind!r}")

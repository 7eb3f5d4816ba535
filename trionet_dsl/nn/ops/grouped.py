"""Grouped convolution (ResNeXt, Xie et al. 2017) in a supernet: each group narrows, as each
head does under Multi-head Sharing (:mod:`trionet_dsl.nn.ops.heads`).

The super conv keeps ``G`` groups of ``D = max_width / G`` channels (weight ``(G*D, D, K, K)``,
read as a ``G x D`` grid of output rows). A sub-network of width ``w`` (``G`` divides ``w``)
uses the first ``d = w / G`` output rows of every group and, in each group, the first ``d``
input columns: ``weight.reshape(G, D, D, K, K)[:, :d, :d]``. Its input is the ``w`` channels
the 1x1 reduce produced, split into ``G`` consecutive groups of ``d`` (``F.conv2d(groups=G)``);
its outputs sit at grid positions ``g * D + j`` (``output_index``), which the BN after it and
the 1x1 expand read, so group ``g``'s channel ``j`` means the same weights at every width.

Parameters ``w * (w / G) * K^2``; multiply-adds ``N ceil(H/s) ceil(W/s) w (w / G) K^2``
(:func:`trionet_dsl.space.op_costs.conv2d_param_count` / ``conv2d_macs`` with ``groups``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.space.sharing import grid_index


class SuperGroupedConv2d(nn.Module):
    """A ``G``-group KxK conv (no bias, padding K//2) of every width of a block in one weight."""

    def __init__(self, out_max: int, groups: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        if groups < 1 or out_max % groups:
            raise ValueError(f"{groups} groups do not divide width {out_max}")
        if kernel % 2 == 0:
            raise ValueError(f"kernel {kernel} is even; padding K//2 keeps the size only for odd kernels")
        self.out_max, self.groups, self.kernel, self.stride = out_max, groups, kernel, stride
        self.grid = (groups, out_max // groups)
        self.weight = nn.Parameter(torch.empty(out_max, out_max // groups, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def sliced_weight(self, width: int) -> torch.Tensor:
        """``(width, width / G, K, K)``: the first ``width / G`` rows and columns of every group."""
        g, big_d = self.grid
        if width % g or not 0 < width <= self.out_max:
            raise ValueError(f"width {width} is not a multiple of {g} groups up to {self.out_max}")
        d, k = width // g, self.kernel
        return self.weight.reshape(g, big_d, big_d, k, k)[:, :d, :d].reshape(width, d, k, k)

    def forward(self, x: torch.Tensor, width: int, heads: int | None = None) -> torch.Tensor:
        if x.shape[1] != width:
            raise ValueError(f"a grouped conv of width {width} got {x.shape[1]} input channels")
        return F.conv2d(x, self.sliced_weight(width), None, self.stride, self.kernel // 2, 1, self.groups)

    @property
    def output_rows(self) -> int:
        return self.out_max

    def output_index(self, width: int, heads: int | None = None) -> torch.Tensor | None:
        """Grid positions of the ``width`` outputs (None when they are the leading ``width``)."""
        idx = grid_index(self.grid, width, self.groups)
        if idx == list(range(width)):
            return None
        return torch.tensor(idx, dtype=torch.long, device=self.weight.device)

    def extract(self, width: int, heads: int | None = None, in_channels: int | None = None) -> nn.Conv2d:
        """A plain grouped ``nn.Conv2d(width, width, groups=G)`` with cloned weights."""
        if in_channels not in (None, width):
            raise ValueError("a grouped conv reads as many channels as it writes")
        conv = nn.Conv2d(width, width, self.kernel, self.stride, self.kernel // 2, groups=self.groups, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.sliced_weight(width))
        return conv.train(self.training)

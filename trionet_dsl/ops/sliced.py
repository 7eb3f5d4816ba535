"""Width-sliced conv and BatchNorm: a sub-network of width ``w`` uses the leading ``w`` output
channels (and the leading input channels it is fed), as in Once-for-All / BigNAS. Convolution
channels have no head structure, so a plain prefix is the natural sharing here.

Conv (groups 1, no bias, padding ``K // 2``), input ``N x C_in x H x W``, ``w`` outputs:

* parameters ``w * C_in * K^2``;
* multiply-adds ``N * ceil(H/s) * ceil(W/s) * C_in * w * K^2`` (odd ``K``; stride ``s``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv2d_param_count(in_channels: int, width: int, kernel: int) -> int:
    """Parameters of a bias-free KxK conv."""
    return width * in_channels * kernel * kernel


def conv2d_macs(height: int, width_px: int, in_channels: int, width: int, kernel: int, stride: int = 1,
                batch: int = 1) -> int:
    """``N ceil(H/s) ceil(W/s) C_in w K^2`` (padding K//2, odd K)."""
    oh, ow = -(-height // stride), -(-width_px // stride)
    return batch * oh * ow * in_channels * width * kernel * kernel


class SuperConv2d(nn.Module):
    """A KxK conv (no bias, padding K//2) at its largest size; ``forward(x, width)`` uses ``weight[:width, :C_in]``."""

    def __init__(self, in_max: int, out_max: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel {kernel} is even; padding K//2 keeps the size only for odd kernels")
        self.in_max, self.out_max, self.kernel, self.stride = in_max, out_max, kernel, stride
        self.weight = nn.Parameter(torch.empty(out_max, in_max, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def sliced_weight(self, width: int, in_channels: int, in_index: torch.Tensor | None = None) -> torch.Tensor:
        """``weight[:width]`` over input columns ``in_index`` (an attention operator's grid
        positions, see ``ops.heads``) or else the leading ``in_channels``."""
        if in_channels > self.in_max or width > self.out_max:
            raise ValueError(f"conv built for {self.in_max} -> {self.out_max} channels got {in_channels} -> {width}")
        w = self.weight[:width]
        return w[:, :in_channels] if in_index is None else w.index_select(1, in_index)

    def forward(self, x: torch.Tensor, width: int, heads: int | None = None,
                in_index: torch.Tensor | None = None) -> torch.Tensor:
        """The leading ``width`` filters over the input's channels (``heads`` is ignored)."""
        return F.conv2d(x, self.sliced_weight(width, x.shape[1], in_index), None, self.stride, self.kernel // 2)

    def extract(self, width: int, heads: int | None = None, in_channels: int | None = None,
                in_index: torch.Tensor | None = None) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with cloned weights; ``in_channels`` defaults to ``in_max``."""
        cin = len(in_index) if in_index is not None else self.in_max if in_channels is None else in_channels
        conv = nn.Conv2d(cin, width, self.kernel, self.stride, self.kernel // 2, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.sliced_weight(width, cin, in_index))
        return conv.train(self.training)

    @staticmethod
    def param_count(in_channels: int, width: int, kernel: int) -> int:
        return conv2d_param_count(in_channels, width, kernel)


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading ``x.shape[1]`` channels of its ``num_features``.

    Uses ``weight/bias/running_mean/running_var[:c]``; in training mode the running
    statistics of that slice are updated in place (the slices are views of the buffers),
    the rest are left alone.
    """

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Normalise x with entries ``[:C]``, or with entries ``index`` (an attention operator's grid
        positions); in training mode the running statistics of exactly those entries are updated."""
        if index is not None:
            return self._forward_indexed(x, index)
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        if c > self.num_features:
            raise ValueError(f"BatchNorm of {self.num_features} channels got {c}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        mean = self.running_mean[:c] if self.running_mean is not None else None
        var = self.running_var[:c] if self.running_var is not None else None
        if self.training and not self.track_running_stats:
            mean = var = None
        weight = self.weight[:c] if self.weight is not None else None
        bias = self.bias[:c] if self.bias is not None else None
        return F.batch_norm(x, mean, var, weight, bias, use_batch, factor, self.eps)

    def _forward_indexed(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != len(index):
            raise ValueError(f"{x.shape[1]} channels but {len(index)} BatchNorm entries selected")
        factor = 0.0 if self.momentum is None else self.momentum
        track = self.training and self.track_running_stats and self.running_mean is not None
        if track and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        # gathered copies: F.batch_norm updates them in place, and they are scattered back below
        mean = self.running_mean.index_select(0, index) if self.running_mean is not None else None
        var = self.running_var.index_select(0, index) if self.running_var is not None else None
        if self.training and not self.track_running_stats:
            mean = var = None
        weight = self.weight.index_select(0, index) if self.weight is not None else None
        bias = self.bias.index_select(0, index) if self.bias is not None else None
        out = F.batch_norm(x, mean, var, weight, bias, use_batch, factor, self.eps)
        if track and mean is not None and var is not None:
            with torch.no_grad():
                self.running_mean.index_copy_(0, index, mean)
                self.running_var.index_copy_(0, index, var)
        return out

    def extract(self, channels: int, index: torch.Tensor | None = None) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d`` of ``channels`` (entries ``[:channels]`` or ``index``), cloned."""
        sel = torch.arange(channels) if index is None else index
        bn = nn.BatchNorm2d(len(sel), eps=self.eps, momentum=self.momentum, affine=self.affine,
                            track_running_stats=self.track_running_stats)
        with torch.no_grad():
            if self.affine:
                bn.weight.copy_(self.weight[sel])
                bn.bias.copy_(self.bias[sel])
            if self.track_running_stats:
                bn.running_mean.copy_(self.running_mean[sel])
                bn.running_var.copy_(self.running_var[sel])
                bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn.train(self.training)

"""Width-sliced conv and BatchNorm: a sub-network of width ``c`` uses the leading ``c``
output channels (and the leading input channels it is fed), as in Once-for-All / BigNAS."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SuperConv2d(nn.Module):
    """A KxK conv (no bias, padding K//2) at its largest size; ``forward(x, out_channels)``."""

    def __init__(self, in_max: int, out_max: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.in_max, self.out_max, self.kernel, self.stride = in_max, out_max, kernel, stride
        self.weight = nn.Parameter(torch.empty(out_max, in_max, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        w = self.weight[:out_channels, : x.shape[1]]
        return F.conv2d(x, w, None, self.stride, self.kernel // 2)

    def extract(self, in_channels: int, out_channels: int) -> nn.Conv2d:
        conv = nn.Conv2d(in_channels, out_channels, self.kernel, self.stride, self.kernel // 2, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.weight[:out_channels, :in_channels])
        return conv


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading ``x.shape[1]`` channels; running stats update in place on that slice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            self.running_mean[:c] if not self.training or self.track_running_stats else None,
            self.running_var[:c] if not self.training or self.track_running_stats else None,
            self.weight[:c], self.bias[:c], use_batch, factor, self.eps,
        )

    def extract(self, channels: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
            bn.running_mean.copy_(self.running_mean[:channels])
            bn.running_var.copy_(self.running_var[:channels])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn

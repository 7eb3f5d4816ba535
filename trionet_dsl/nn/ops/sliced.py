"""Width-sliced conv and BatchNorm: a sub-network of width ``w`` uses the leading ``w`` output
channels (and the leading input channels it is fed), as in Once-for-All / BigNAS. Convolution
channels have no head structure, so a plain prefix is the natural sharing here.

Conv (groups 1, no bias, padding ``K // 2``), input ``N x C_in x H x W``, ``w`` outputs:

* parameters ``w * C_in * K^2``;
* multiply-adds ``N * ceil(H/s) * ceil(W/s) * C_in * w * K^2`` (odd ``K``; stride ``s``).

**Grouped conv** (``groups=G``, ResNeXt): the super conv keeps its ``G`` groups at every width, and
a sub-conv of ``w`` outputs over ``c`` inputs uses the first ``w/G`` filters of every group, each
over the first ``c/G`` input channels of its group: ``weight.view(G, out_max/G, in_max/G, K, K)
[:, :w/G, :c/G]`` — each group narrows as Multi-head Sharing narrows each head (a group is a head
of the conv). Its outputs therefore sit at grid positions ``g * out_max/G + i`` (``i < w/G``) of
the super conv's outputs, which the BN and the 1x1 after it address (``output_index``); its inputs
are the ``c`` channels it is fed, read as ``G`` consecutive blocks of ``c/G``. Parameters
``w * (C_in / G) * K^2``, multiply-adds ``N ceil(H/s) ceil(W/s) (C_in / G) w K^2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.nn.ops.heads import Axis, cached, index_axis
from trionet_dsl.space.op_costs import conv2d_macs, conv2d_param_count

__all__ = ["SlicedBatchNorm2d", "SuperConv2d", "conv2d_macs", "conv2d_param_count"]


def _channels_last(weight: torch.Tensor) -> bool:
    """Whether a conv weight has channels_last strides, 1x1 kernels included (for those both
    ``is_contiguous`` tests answer True; conv picks its output format from the strides)."""
    return weight.dim() == 4 and weight.shape[1] > 1 and weight.stride(1) == 1 and weight.stride(3) == weight.shape[1]


def _dense(w: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A copy of a column-sliced weight in the stored memory format. Conv copies a strided weight
    itself, but its backward then writes the weight gradient through the strided view: measured on
    trionet_r50's 2048 x 1024 expand reading 512 columns (batch 2, 7x7), fwd+bwd 101 ms strided,
    78 ms copied, 55 ms for a plain weight of that size."""
    return w.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class SuperConv2d(nn.Module):
    """A KxK conv (no bias, padding K//2) at its largest size; ``forward(x, width)`` uses ``weight[:width, :C_in]``."""

    def __init__(self, in_max: int, out_max: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel {kernel} is even; padding K//2 keeps the size only for odd kernels")
        if groups < 1 or in_max % groups or out_max % groups:
            raise ValueError(f"{groups} groups do not divide {in_max} -> {out_max} channels")
        self.in_max, self.out_max, self.kernel, self.stride = in_max, out_max, kernel, stride
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_max, in_max // groups, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def sliced_weight(self, width: int, in_channels: int, in_index: torch.Tensor | None = None) -> torch.Tensor:
        """``weight[:width]`` over input columns ``in_index`` (an attention operator's grid
        positions, see ``ops.heads``) or else the leading ``in_channels``; grouped: the first
        ``width/G`` filters of every group over the first ``in_channels/G`` inputs of theirs."""
        if in_channels > self.in_max or width > self.out_max:
            raise ValueError(f"conv built for {self.in_max} -> {self.out_max} channels got {in_channels} -> {width}")
        g = self.groups
        if g > 1:
            if in_index is not None or width % g or in_channels % g:
                raise ValueError(f"a conv of {g} groups cannot run {in_channels} -> {width} channels")
            k = self.kernel
            grid = self.weight.view(g, self.out_max // g, self.in_max // g, k, k)
            return grid[:, : width // g, : in_channels // g].reshape(width, in_channels // g, k, k)
        # no slicing op where the slice is the whole dim: each op is an autograd node backward too
        w = self.weight if width == self.out_max else self.weight[:width]
        cl = _channels_last(self.weight)
        if in_index is None:
            return w if in_channels == self.in_max else _dense(w[:, :in_channels], cl)
        axis = self._in_axis(in_index) if self.kernel == 1 else None
        if axis is not None and axis.leading:
            return _dense(w[:, : axis.total], cl)
        if axis is not None:
            # grid positions (an attention operator's outputs): a strided view of the blocks and one
            # copy, not index_select, whose backward on CPU runs element by element (measured on
            # trionet_r50's 2048 x 1024 expand: 12 ms forward, 7 ms backward, against 0.3 ms)
            o, (s0, s1) = w.shape[0], w.stride()[:2]
            blocks = w.as_strided((o, axis.blocks, axis.size), (s0, axis.stride * s1, s1)).reshape(o, axis.total)
            # the copy keeps the stored memory format: channels_last strides if the weight has them (a
            # 1x1 conv of an NCHW input with an NCHW weight answers NCHW where the extracted model's
            # channels_last weight answers channels_last, and every layer after it would run in the
            # other format — measured: most of the supernet's overhead before this was done)
            return blocks.view(o, 1, 1, -1).permute(0, 3, 1, 2) if cl else blocks.view(o, -1, 1, 1)
        if cl:  # gather in the (out, K, K, in) view so the copy keeps channels_last strides
            return w.permute(0, 2, 3, 1).index_select(3, in_index).permute(0, 3, 1, 2)
        return w.index_select(1, in_index)

    def _in_axis(self, in_index: torch.Tensor) -> Axis | None:
        """``in_index`` as an ``Axis`` (None: not of that form), read once per index tensor: the
        index tensors are the operators' cached ones, so this looks each up by identity (holding
        it, so its id cannot be reused) instead of reading its values at every forward."""
        cache = self.__dict__.setdefault("_axis_cache", {})
        hit = cache.get(id(in_index))
        if hit is not None and hit[0] is in_index:
            return hit[1]
        if len(cache) >= 64:  # fresh index tensors at every call (not the operators' cached ones)
            cache.clear()
        axis = index_axis(in_index.tolist())
        cache[id(in_index)] = (in_index, axis)
        return axis

    def output_index(self, width: int) -> torch.Tensor | None:
        """Where the ``width`` outputs sit among ``out_max``: None (the leading ones) unless grouped and narrowed."""
        g = self.groups
        if g == 1 or width == self.out_max:
            return None

        def build() -> torch.Tensor:
            per, sub = self.out_max // g, width // g
            return (torch.arange(g).view(g, 1) * per + torch.arange(sub).view(1, sub)).reshape(-1)

        return cached(self, ("output_index", width), build)

    def forward(
        self, x: torch.Tensor, width: int, heads: int | None = None, in_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The leading ``width`` filters over the input's channels (``heads`` is ignored)."""
        w = self.sliced_weight(width, x.shape[1], in_index)
        return F.conv2d(x, w, None, self.stride, self.kernel // 2, 1, self.groups)

    def extract(
        self, width: int, heads: int | None = None, in_channels: int | None = None, in_index: torch.Tensor | None = None
    ) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with cloned weights; ``in_channels`` defaults to ``in_max``."""
        cin = len(in_index) if in_index is not None else self.in_max if in_channels is None else in_channels
        conv = nn.Conv2d(cin, width, self.kernel, self.stride, self.kernel // 2, bias=False, groups=self.groups)
        with torch.no_grad():
            conv.weight.copy_(self.sliced_weight(width, cin, in_index))
        return conv.train(self.training)

    @staticmethod
    def param_count(in_channels: int, width: int, kernel: int, groups: int = 1) -> int:
        return conv2d_param_count(in_channels, width, kernel, groups)


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading ``x.shape[1]`` channels of its ``num_features``.

    Uses ``weight/bias/running_mean/running_var[:c]``; in training mode the running
    statistics of that slice are updated in place (the slices are views of the buffers),
    the rest are left alone.
    """

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Normalise x with entries ``[:C]``, or with entries ``index`` (an attention operator's grid
        positions); in training mode the running statistics of exactly those entries are updated."""
        c = x.shape[1]
        if index is None and c == self.num_features:
            return super().forward(x)
        if index is None and c > self.num_features:
            raise ValueError(f"BatchNorm of {self.num_features} channels got {c}")
        if index is not None and c != len(index):
            raise ValueError(f"{c} channels but {len(index)} BatchNorm entries selected")
        factor = 0.0 if self.momentum is None else self.momentum
        track = self.training and self.track_running_stats and self.running_mean is not None
        if track and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        # leading entries: views, so F.batch_norm updates the running stats in place; entries at grid
        # positions: gathered copies (one op per tensor), whose updates are scattered back below
        mean, var, weight, bias = (
            (None if t is None else t[:c] if index is None else t.index_select(0, index))
            for t in (self.running_mean, self.running_var, self.weight, self.bias)
        )
        if self.training and not self.track_running_stats:
            mean = var = None
        out = F.batch_norm(x, mean, var, weight, bias, use_batch, factor, self.eps)
        if track and index is not None and mean is not None and var is not None:
            # track implies the running buffers exist (BatchNorm registers mean and var together)
            assert self.running_mean is not None and self.running_var is not None
            with torch.no_grad():  # scatter the gathered copies' updates back
                self.running_mean.index_copy_(0, index, mean)
                self.running_var.index_copy_(0, index, var)
        return out

    def extract(self, channels: int, index: torch.Tensor | None = None) -> nn.BatchNorm2d:
        """A plain ``nn.BatchNorm2d`` of ``channels`` (entries ``[:channels]`` or ``index``), cloned."""
        sel = torch.arange(channels) if index is None else index
        bn = nn.BatchNorm2d(
            len(sel),
            eps=self.eps,
            momentum=self.momentum,
            affine=self.affine,
            track_running_stats=self.track_running_stats,
        )
        with torch.no_grad():
            if self.affine:
                bn.weight.copy_(self.weight[sel])
                bn.bias.copy_(self.bias[sel])
            if self.track_running_stats:
                # track_running_stats=True registers the three buffers, on this BN and on the copy
                mean, var, count = self.running_mean, self.running_var, self.num_batches_tracked
                assert mean is not None and var is not None and count is not None
                assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
                bn.running_mean.copy_(mean[sel])
                bn.running_var.copy_(var[sel])
                bn.num_batches_tracked.copy_(count)
        return bn.train(self.training)

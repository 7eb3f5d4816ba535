"""Synchronised BatchNorm for sliced (and plain) BNs: batch statistics over every rank's samples.

Why not ``torch.nn.SyncBatchNorm``: ``convert_sync_batchnorm`` turns a :class:`SlicedBatchNorm2d`
into a plain full-width BN (a sub-network of width ``w`` then fails or normalises the wrong
entries), and torch's SyncBatchNorm runs on GPUs only (it refuses CPU tensors, so no gloo runs).
:class:`SyncSlicedBatchNorm2d` keeps the slicing (the leading ``C`` entries, or an attention
operator's grid positions) and synchronises over any backend.

Training-mode forward on ``N_r`` samples per rank, ``C`` channels, ``M = sum_r N_r H W`` values
per channel: one ``all_reduce`` of the per-channel ``sum(x - k)``, ``sum((x - k)^2)`` and the count,
shifted by ``k`` = the running mean (the same on every rank; it keeps ``E[(x-k)^2] - E[x-k]^2``
from cancelling when ``|mean| >> std``), gives the mean and biased variance of the whole global
batch. The backward of ``y = gamma * xhat + beta`` is (``xhat = (x - mean) * invstd``)::

    dx = gamma * invstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)

with both sums over the *global* batch: a second ``all_reduce`` in the backward. ``d gamma`` and
``d beta`` stay this rank's sums, and the gradient averaging of data parallelism combines them
like every other gradient. The running statistics are updated as one process's BN would
(unbiased variance ``var * M / (M - 1)``, with the global ``M``), identically on every rank.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from trionet_dsl.nn.ops.sliced import SlicedBatchNorm2d

__all__ = ["SyncSlicedBatchNorm2d", "convert_sync_bn", "sync_paused"]

_DIMS = (0, 2, 3)


def _world(group: Any) -> int:
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


class _SyncBatchNorm(torch.autograd.Function):
    """Batch statistics and their gradient over all ranks of ``group`` (module docstring)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        shift: torch.Tensor,
        eps: float,
        group: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c = x.shape[1]
        acc = torch.promote_types(x.dtype, torch.float32)  # bf16/fp16 inputs: statistics in fp32
        xf = x.to(acc)
        k = shift.to(acc).view(1, c, 1, 1)
        centred = xf - k
        stats = torch.cat(
            [
                centred.sum(_DIMS),
                (centred * centred).sum(_DIMS),
                torch.full((1,), float(x.numel() // c), dtype=acc, device=x.device),
            ]
        )
        dist.all_reduce(stats, group=group)
        m = stats[-1].clone()
        if x.device.type == "cpu" and float(m) <= 1:  # (reading it on a GPU would stall every BN)
            raise ValueError(f"Expected more than 1 value per channel when training, got {int(m)} over all processes")
        shifted_mean = stats[:c] / m
        var = (stats[c : 2 * c] / m - shifted_mean * shifted_mean).clamp_min(0)
        mean = shift.to(acc) + shifted_mean
        invstd = torch.rsqrt(var + eps)
        xhat = (xf - mean.view(1, c, 1, 1)) * invstd.view(1, c, 1, 1)
        y = xhat
        if weight is not None:
            y = y * weight.to(acc).view(1, c, 1, 1)
        if bias is not None:
            y = y + bias.to(acc).view(1, c, 1, 1)
        ctx.save_for_backward(x, weight, mean, invstd, m)
        ctx.group = group
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.mark_non_differentiable(mean, var, m)
        return y.to(x.dtype), mean, var, m

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:
        x, weight, mean, invstd, m = ctx.saved_tensors
        c = x.shape[1]
        dyf = dy.to(mean.dtype)
        xhat = (x.to(mean.dtype) - mean.view(1, c, 1, 1)) * invstd.view(1, c, 1, 1)
        sum_dy = dyf.sum(_DIMS)
        sum_dy_xhat = (dyf * xhat).sum(_DIMS)
        d_weight = sum_dy_xhat.to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
        d_bias = sum_dy.to(ctx.bias_dtype) if ctx.bias_dtype is not None and ctx.needs_input_grad[2] else None
        dx = None
        if ctx.needs_input_grad[0]:
            both = torch.cat([sum_dy, sum_dy_xhat])  # a copy: the local sums above stay the parameter grads
            dist.all_reduce(both, group=ctx.group)
            g_dy, g_dy_xhat = both[:c] / m, both[c:] / m
            scale = invstd if weight is None else invstd * weight.to(mean.dtype)
            dx = (dyf - g_dy.view(1, c, 1, 1) - xhat * g_dy_xhat.view(1, c, 1, 1)) * scale.view(1, c, 1, 1)
            dx = dx.to(x.dtype)
        return dx, d_weight, d_bias, None, None, None


class SyncSlicedBatchNorm2d(SlicedBatchNorm2d):
    """A :class:`SlicedBatchNorm2d` whose training-mode statistics span all ranks (module docstring).

    Outside training, with one process, or while :func:`sync_paused`, it is exactly the
    sliced BN it replaces (same forward code, same state-dict keys).
    """

    def __init__(self, *args: Any, process_group: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.process_group = process_group
        self.sync = True

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if not (self.training and self.sync and _world(self.process_group) > 1):
            return super().forward(x, index)
        c = x.shape[1]
        if index is None and c > self.num_features:
            raise ValueError(f"BatchNorm of {self.num_features} channels got {c}")
        if index is not None and c != len(index):
            raise ValueError(f"{c} channels but {len(index)} BatchNorm entries selected")

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return t[:c] if index is None else t.index_select(0, index)

        track = self.track_running_stats and self.running_mean is not None and self.running_var is not None
        running_mean = pick(self.running_mean) if track else None
        shift = running_mean.detach() if running_mean is not None else x.new_zeros(c, dtype=torch.float32)
        group = self.process_group or dist.group.WORLD
        out, mean, var, m = _SyncBatchNorm.apply(x, pick(self.weight), pick(self.bias), shift, self.eps, group)
        if track:
            assert self.running_mean is not None and self.running_var is not None
            factor = 0.0 if self.momentum is None else self.momentum
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                unbiased = var * (m / (m - 1))
                rm, rv = self.running_mean, self.running_var
                new_mean = pick(rm) * (1 - factor) + mean.to(rm.dtype) * factor  # type: ignore[operator]
                new_var = pick(rv) * (1 - factor) + unbiased.to(rv.dtype) * factor  # type: ignore[operator]
                if index is None:
                    rm[:c].copy_(new_mean)
                    rv[:c].copy_(new_var)
                else:
                    rm.index_copy_(0, index, new_mean)
                    rv.index_copy_(0, index, new_var)
        return out


def convert_sync_bn(module: nn.Module, process_group: Any = None) -> nn.Module:
    """Replace every ``BatchNorm2d`` (plain or sliced) inside ``module`` by a
    :class:`SyncSlicedBatchNorm2d` holding the very same parameter and buffer tensors, so an
    optimizer or state dict made before or after sees no difference. Returns ``module`` (or the
    replacement, when ``module`` itself is a BN)."""
    if type(module) in (nn.BatchNorm2d, SlicedBatchNorm2d):
        bn = module
        assert isinstance(bn, nn.BatchNorm2d)
        new = SyncSlicedBatchNorm2d(
            bn.num_features,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
            process_group=process_group,
        )
        if bn.affine:
            new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
        new.train(bn.training)
        return new
    for name, child in module.named_children():
        new_child = convert_sync_bn(child, process_group)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


@contextlib.contextmanager
def sync_paused(module: nn.Module) -> Iterator[None]:
    """Run ``module``'s synchronised BNs as local ones (one rank recalibrating BN for validation
    alone must not wait for the others)."""
    bns = [m for m in module.modules() if isinstance(m, SyncSlicedBatchNorm2d)]
    before = [m.sync for m in bns]
    for m in bns:
        m.sync = False
    try:
        yield
    finally:
        for m, s in zip(bns, before, strict=True):
            m.sync = s

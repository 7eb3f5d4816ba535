"""Image preparation done once at load time, and batch augmentation done per step.

Augmentation works on a whole batch tensor with per-sample offsets and flips the caller
draws (one generator per sample, see ``samples.sample_rng``), so it is reproducible and
resumable and does not depend on how batches are split between processes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of an N x C x H x W batch."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def adapt_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> RGB by repetition, RGB -> grey by ITU-R 601 luminance."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if channels == 1 and c == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    raise ValueError(f"cannot turn {c}-channel images into {channels} channels")


def augment(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop at offsets ``(dy, dx)`` (each 0 .. 2 pad, per sample) after zero padding by ``pad``
    pixels, then flip the samples where ``flips`` is true; the draws come from the caller."""
    n, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        rows = dy[:, None] + torch.arange(h)[None, :]  # n x h
        cols = dx[:, None] + torch.arange(w)[None, :]  # n x w
        idx_n = torch.arange(n)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if bool(flips.any()):
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
    return x.contiguous()

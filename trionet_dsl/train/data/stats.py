"""Normalisation statistics: given (``--mean/--std``), a preset (``imagenet``), or estimated.

A streamed folder cannot be averaged whole before training (ImageNet is 1.28M decodes), so
its statistics are estimated on a seeded subset of the training split — the validation view
of each image (resize + centre crop, no randomness), pixels in [0, 1] — and recorded in the
checkpoint, which search, export and rank then reuse instead of estimating again.
"""

from __future__ import annotations

import numpy as np
import torch

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.train.data.recipe import IMAGENET_MEAN, IMAGENET_STD

PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD)}


def parse_stats(mean: str | None, std: str | None, channels: int) -> tuple[list[float] | None, list[float] | None]:
    """``--mean`` / ``--std`` as lists: comma-separated numbers, or a preset name; ``--mean imagenet``
    alone gives both. Grey spaces take the channel average of a 3-channel preset."""
    if mean is None and std is None:
        return None, None

    def one(text: str, which: int, opt: str) -> list[float]:
        t = text.strip().lower()
        if t in PRESETS:
            vals = list(PRESETS[t][which])
            return [float(np.mean(vals))] if channels == 1 else vals
        try:
            vals = [float(v) for v in text.split(",")]
        except ValueError:
            raise SpaceError(
                f"cannot read {opt} '{text}'",
                hint=f"give {channels} comma-separated numbers for pixels in [0, 1], or a preset: {', '.join(PRESETS)}",
            ) from None
        if len(vals) == 1 and channels > 1:
            vals = vals * channels
        if len(vals) != channels:
            raise SpaceError(f"{opt} '{text}' has {len(vals)} values but the images have {channels} channels")
        if opt == "--std" and min(vals) <= 0:
            raise SpaceError(f"--std '{text}' must be positive")
        return vals

    if mean is not None and std is None and mean.strip().lower() in PRESETS:
        std = mean
    if mean is None or std is None:
        raise SpaceError("--mean and --std go together", hint="give both, or a preset: --mean imagenet")
    return one(mean, 0, "--mean"), one(std, 1, "--std")


def estimate_stats(pixels, count: int, n: int, seed: int, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std over ``n`` seeded picks of ``count`` samples; ``pixels(i)``: H x W x C uint8."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(count, generator=gen)[: min(n, count)].sort().values.tolist()
    total = np.zeros(channels)
    squares = np.zeros(channels)
    seen = 0
    for i in rows:
        a = pixels(i).reshape(-1, channels).astype(np.float64) / 255.0
        total += a.sum(0)
        squares += (a * a).sum(0)
        seen += len(a)
    mean = total / seen
    std = np.sqrt(np.maximum(squares / seen - mean * mean, 0.0))
    return mean.tolist(), np.maximum(std, 1e-6).tolist()

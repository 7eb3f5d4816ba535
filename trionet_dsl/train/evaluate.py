"""Measuring a network: top-1 accuracy, and BatchNorm recalibration for a sub-network.

A supernet's running BN statistics mix every sampled sub-network; before a sub-network is
measured (search) or shipped (export), its statistics are re-estimated on fixed training
batches. Search and export use these same functions and batches, so they agree.
Both follow the model: batches go to the device its parameters are on, and ``precision``
autocasts the forward passes as training did.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from trionet_dsl.train.config import ONE_SHOT_BN_BATCHES
from trionet_dsl.train.device import autocast, model_device

__all__ = [
    "CALIBRATION_BATCH_SIZE",
    "ONE_SHOT_BN_BATCHES",
    "VALIDATION_BATCH_SIZE",
    "calibration_batches",
    "evaluate",
    "recalibrate_bn",
    "reset_bn_for_calibration",
    "restore_bn_momentum",
]

if TYPE_CHECKING:
    from trionet_dsl.train.data import DataBundle


CALIBRATION_BATCH_SIZE = 128
"""Batch size of BN recalibration: search, export and epoch validation must use the same batches."""

VALIDATION_BATCH_SIZE = 256
"""Batch size of a validation pass (``evaluate_split``); the prefix cache's block-by-block one-shot
evaluation batches the split alike, so that its numbers are the whole network's bit for bit."""


@torch.no_grad()
def accuracy(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    channels_last: bool = True,
    precision: str = "fp32",
) -> float:
    """Top-1 accuracy over ``(images, labels)`` batches in eval mode, computed on the model's device."""
    model.eval()
    device = model_device(model)
    correct = seen = 0
    for xb, yb in batches:
        xb = xb.to(device)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits = model(xb)
        correct += (logits.argmax(1).cpu() == yb).sum().item()
        seen += len(yb)
    return correct / max(1, seen)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = VALIDATION_BATCH_SIZE,
    channels_last: bool = True,
    precision: str = "fp32",
) -> float:
    """Top-1 accuracy on in-memory tensors."""
    batches = ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size))
    return accuracy(model, batches, channels_last, precision)


def evaluate_split(
    model: nn.Module,
    data: DataBundle,
    limit: int | None = None,
    batch_size: int = VALIDATION_BATCH_SIZE,
    channels_last: bool = True,
    precision: str = "fp32",
) -> float:
    """Top-1 accuracy on a bundle's validation split (its first ``limit`` images), in memory or streamed."""
    from trionet_dsl.train.data import iterate

    batches = iterate(data, "val", batch_size, 0, 0, augment=False, limit=limit)
    return accuracy(model, batches, channels_last, precision)


def calibration_batches(
    data: DataBundle, n: int, batch_size: int, seed: int, channels_last: bool = True
) -> list[torch.Tensor]:
    """The first ``n`` un-augmented training batches of epoch 0: fixed inputs for ``recalibrate_bn``.

    The last batch may be short: with drop_last a split smaller than one batch gave no
    batches at all, and recalibration then reset BN to mean 0 / variance 1.
    """
    from trionet_dsl.train.data import iterate

    batches = iterate(data, "train", batch_size, 0, seed, augment=False)
    return [
        xb.contiguous(memory_format=torch.channels_last) if channels_last else xb
        for _, (xb, _) in zip(range(n), batches, strict=False)  # at most n: the epoch may have fewer or more
    ]


def reset_bn_for_calibration(module: nn.Module) -> list[float | None]:
    """Reset every BN's running statistics in ``module`` and make them a plain average over the
    batches that follow (momentum None); returns the momenta for ``restore_bn_momentum``."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    return saved


def restore_bn_momentum(module: nn.Module, saved: list[float | None]) -> None:
    """Undo ``reset_bn_for_calibration``'s change of momentum (the statistics stay)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom


def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor], precision: str = "fp32") -> None:
    """Reset BN running stats and re-estimate them as a plain average over ``batches`` (moved to
    the model's device; the batches themselves stay where they are)."""
    saved = reset_bn_for_calibration(model)
    model.train()
    device = model_device(model)
    with torch.no_grad(), autocast(device, precision):
        for xb in batches:
            model(xb.to(device))
    restore_bn_momentum(model, saved)
    model.eval()

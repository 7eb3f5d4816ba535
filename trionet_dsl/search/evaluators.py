"""Evaluators: what a candidate architecture is worth.

``SupernetEvaluator`` is the one-shot estimate: inherit the supernet's weights,
recalibrate BatchNorm statistics for this sub-network on a few fixed training batches
(shared BN statistics belong to no single sub-network), then measure validation
accuracy. ``flops``/``params`` evaluators rank by cost alone; any callable
``arch -> accuracy`` works too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch

from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.prefix_cache import DEFAULT_CACHE_BYTES, PrefixCache, layerwise_accuracy
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.train.data.samples import TensorSamples
from trionet_dsl.train.device import model_device
from trionet_dsl.train.evaluate import (
    CALIBRATION_BATCH_SIZE,
    ONE_SHOT_BN_BATCHES,
    calibration_batches,
    evaluate_split,
    recalibrate_bn,
)

if TYPE_CHECKING:
    from trionet_dsl.nn.supernet import Supernet
    from trionet_dsl.train.data import DataBundle


class Evaluator(Protocol):
    def __call__(self, arch: Arch) -> dict[str, float]: ...


class SupernetEvaluator:
    """Validation accuracy of a sub-network with inherited weights and recalibrated BN; with a
    validation split in memory, computed block by block, reusing the work of archs evaluated before
    that share leading blocks (``cache_bytes`` of activations; 0: the whole net batch by batch —
    the same accuracies and BN statistics, see ``search.prefix_cache``)."""

    def __init__(
        self,
        supernet: Supernet,
        data: DataBundle,
        bn_batches: int = ONE_SHOT_BN_BATCHES,
        batch_size: int = CALIBRATION_BATCH_SIZE,
        seed: int = 0,
        channels_last: bool = True,
        max_val: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.net = supernet
        self.channels_last = channels_last
        self.calib = calibration_batches(data, bn_batches, batch_size, seed, channels_last)
        self.data, self.max_val = data, max_val  # in memory or streamed: evaluate_split reads batches
        # block by block with shared prefixes reused (``prefix_cache``): the same accuracies; only
        # for a validation split in memory (a streamed one is read batch by batch, as before)
        in_memory = isinstance(data.val, TensorSamples)
        self.cache = PrefixCache(cache_bytes) if cache_bytes > 0 and in_memory else None
        self._inputs: tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: dict,
        space: ResolvedSpace,
        data: DataBundle,
        bn_batches: int = ONE_SHOT_BN_BATCHES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> SupernetEvaluator:
        """The one-shot measure ``trionet search`` ranks by and ``trionet rank`` validates, built one
        way for both: the checkpoint's supernet, BN recalibrated on the first ``bn_batches``
        un-augmented training batches of the data's own split seed, the whole validation split."""
        from trionet_dsl.nn.supernet import Supernet

        seed = data.config.seed if data.config is not None else 0
        net = Supernet.from_checkpoint(checkpoint, space)
        return cls(net, data, bn_batches=bn_batches, seed=seed, cache_bytes=cache_bytes)

    def __call__(self, arch: Arch) -> dict[str, float]:
        self.net.activate(arch)
        if self.cache is not None:
            calib, val = self._device_inputs()
            acc = layerwise_accuracy(self.net, arch, calib, val, self.cache)
            if self.cache.stem is None:  # not even the stem's activations fit: nothing would be reused
                self.cache = None
            return {"accuracy": acc}
        recalibrate_bn(self.net, self.calib)
        return {"accuracy": evaluate_split(self.net, self.data, self.max_val, channels_last=self.channels_last)}

    def _device_inputs(self) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
        """Calibration and validation batches on the net's device, in the format the full path uses."""
        if self._inputs is None:
            from trionet_dsl.train.data import iterate

            device = model_device(self.net)
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            calib = [xb.to(device) for xb in self.calib]
            val = [
                (xb.to(device).contiguous(memory_format=fmt), yb)
                for xb, yb in iterate(self.data, "val", 256, 0, 0, augment=False, limit=self.max_val)
            ]
            self._inputs = calib, val
        return self._inputs


class CallableEvaluator:
    """Wrap a user's ``arch -> accuracy`` function."""

    def __init__(self, fn: Callable[[Arch], float]) -> None:
        self.fn = fn

    def __call__(self, arch: Arch) -> dict[str, float]:
        return {"accuracy": float(self.fn(arch))}


class CostOnlyEvaluator:
    """No accuracy: the search then ranks by the negated cost (fewest FLOPs or params)."""

    def __init__(self, objective: str) -> None:
        self.objective = objective

    def __call__(self, arch: Arch) -> dict[str, float]:
        return {}

"""Evaluators: what a candidate architecture is worth.

``SupernetEvaluator`` is the one-shot estimate: inherit the supernet's weights,
recalibrate BatchNorm statistics for this sub-network on a few fixed training batches
(shared BN statistics belong to no single sub-network), then measure validation
accuracy. With ``compile_mode`` on, the validation pass runs on the arch's extracted
sub-network compiled by ``torch.compile`` (fixed shapes: one graph per arch; see
:mod:`trionet_dsl.train.compiling` for where that pays). ``flops``/``params`` evaluators rank by
cost alone; any callable ``arch -> accuracy`` works too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch

from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.prefix_cache import DEFAULT_CACHE_BYTES, PrefixCache, layerwise_accuracy
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.train.compiling import check_compile_mode, compile_model, compile_scope
from trionet_dsl.train.data.samples import TensorSamples
from trionet_dsl.train.device import model_device
from trionet_dsl.train.evaluate import (
    CALIBRATION_BATCH_SIZE,
    ONE_SHOT_BN_BATCHES,
    VALIDATION_BATCH_SIZE,
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
    the same accuracies and BN statistics, see ``search.prefix_cache``). With ``compile_mode`` on
    (``torch.compile`` with ``compile_backend``), BN is recalibrated on the supernet as without it,
    then the validation split runs through the arch's extracted, compiled sub-network; prefixes are
    not reused then (a compiled network runs whole)."""

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
        compile_mode: str = "off",
        compile_backend: str = "inductor",
    ) -> None:
        self.net = supernet
        self.compile_mode, self.compile_backend = check_compile_mode(compile_mode), compile_backend
        self.channels_last = channels_last
        self.calib = calibration_batches(data, bn_batches, batch_size, seed, channels_last)
        self.data, self.max_val = data, max_val  # in memory or streamed: evaluate_split reads batches
        # block by block with shared prefixes reused (``prefix_cache``): the same accuracies; only
        # for a validation split in memory (a streamed one is read batch by batch, as before)
        in_memory = isinstance(data.val, TensorSamples)
        reuse = cache_bytes > 0 and in_memory and compile_mode == "off"
        self.cache = PrefixCache(cache_bytes) if reuse else None
        self._inputs: tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: dict,
        space: ResolvedSpace,
        data: DataBundle,
        bn_batches: int = ONE_SHOT_BN_BATCHES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        compile_mode: str = "off",
        compile_backend: str = "inductor",
    ) -> SupernetEvaluator:
        """The one-shot measure ``trionet search`` ranks by and ``trionet rank`` validates, built one
        way for both: the checkpoint's supernet, BN recalibrated on the first ``bn_batches``
        un-augmented training batches of the data's own split seed, the whole validation split."""
        from trionet_dsl.nn.supernet import Supernet

        seed = data.config.seed if data.config is not None else 0
        net = Supernet.from_checkpoint(checkpoint, space)
        return cls(
            net,
            data,
            bn_batches=bn_batches,
            seed=seed,
            cache_bytes=cache_bytes,
            compile_mode=compile_mode,
            compile_backend=compile_backend,
        )

    def __call__(self, arch: Arch) -> dict[str, float]:
        self.net.activate(arch)
        if self.cache is not None:
            calib, val = self._device_inputs()
            acc = layerwise_accuracy(self.net, arch, calib, val, self.cache)
            if self.cache.stem is None:  # not even the stem's activations fit: nothing would be reused
                self.cache = None
            return {"accuracy": acc}
        recalibrate_bn(self.net, self.calib)
        if self.compile_mode != "off":
            return {"accuracy": self._compiled_accuracy()}
        return {"accuracy": evaluate_split(self.net, self.data, self.max_val, channels_last=self.channels_last)}

    def _compiled_accuracy(self) -> float:
        """The active arch's validation accuracy on its extracted sub-network, compiled (BN already
        recalibrated on the supernet, so the supernet's state is what the eager path leaves)."""
        from trionet_dsl.nn.supernet import extract

        sub = extract(self.net).to(model_device(self.net)).eval()  # extract builds on the CPU
        with compile_scope(self.compile_mode):  # a graph per arch: past dynamo's limit of 8 too
            net = compile_model(sub, self.compile_mode, self.compile_backend)
            return evaluate_split(net, self.data, self.max_val, channels_last=self.channels_last)

    def _device_inputs(self) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
        """Calibration and validation batches on the net's device, in the format the full path uses."""
        if self._inputs is None:
            from trionet_dsl.train.data import iterate

            device = model_device(self.net)
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            calib = [xb.to(device) for xb in self.calib]
            val = [
                (xb.to(device).contiguous(memory_format=fmt), yb)
                for xb, yb in iterate(self.data, "val", VALIDATION_BATCH_SIZE, 0, 0, augment=False, limit=self.max_val)
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

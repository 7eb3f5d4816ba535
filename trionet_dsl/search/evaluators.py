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

from trionet_dsl.lang.ir import Arch
from trionet_dsl.space.resolve import ResolvedSpace
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
    """Validation accuracy of a sub-network with inherited weights and recalibrated BN."""

    def __init__(
        self,
        supernet: Supernet,
        data: DataBundle,
        bn_batches: int = ONE_SHOT_BN_BATCHES,
        batch_size: int = CALIBRATION_BATCH_SIZE,
        seed: int = 0,
        channels_last: bool = True,
        max_val: int | None = None,
    ) -> None:
        self.net = supernet
        self.channels_last = channels_last
        self.calib = calibration_batches(data, bn_batches, batch_size, seed, channels_last)
        self.data, self.max_val = data, max_val  # in memory or streamed: evaluate_split reads batches

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict, space: ResolvedSpace, data: DataBundle, bn_batches: int = ONE_SHOT_BN_BATCHES
    ) -> SupernetEvaluator:
        """The one-shot measure ``trionet search`` ranks by and ``trionet rank`` validates, built one
        way for both: the checkpoint's supernet, BN recalibrated on the first ``bn_batches``
        un-augmented training batches of the data's own split seed, the whole validation split."""
        from trionet_dsl.nn.supernet import Supernet

        seed = data.config.seed if data.config is not None else 0
        return cls(Supernet.from_checkpoint(checkpoint, space), data, bn_batches=bn_batches, seed=seed)

    def __call__(self, arch: Arch) -> dict[str, float]:
        self.net.activate(arch)
        recalibrate_bn(self.net, self.calib)
        return {"accuracy": evaluate_split(self.net, self.data, self.max_val, channels_last=self.channels_last)}


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

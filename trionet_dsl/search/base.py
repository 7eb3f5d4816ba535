"""The strategy protocol (ask/tell) and the limits every strategy respects.

A strategy proposes architectures (``ask``) and learns from their results (``tell``).
Limits are checked with the analytic cost model before anything is evaluated, so a
rejected candidate costs microseconds. Third-party strategies register under the
``trionet_dsl.strategies`` entry-point group with a factory of the same signature.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from trionet_dsl.lang.ir import Arch
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.space.sampling import sample

PREFIX_CACHE_MB = 1024
"""Memory for one-shot evaluation's prefix cache by default (``search.prefix_cache``); here,
torch-free, so the CLI can show it without importing torch. On ``trionet_small`` with digits one
block's calibration + validation activations are 11-45 MB, a whole architecture's about 160 MB."""


class Limits(BaseModel):
    """Upper bounds on a sub-network's cost (None: unbounded)."""

    max_flops: int | None = None
    max_params: int | None = None
    min_flops: int | None = None

    def admits(self, params: int, flops: int) -> bool:
        return (
            (self.max_flops is None or flops <= self.max_flops)
            and (self.max_params is None or params <= self.max_params)
            and (self.min_flops is None or flops >= self.min_flops)
        )


@dataclass
class Observation:
    """What an evaluation measured for one architecture."""

    arch: Arch
    accuracy: float | None
    params: int
    flops: int
    extra: dict = field(default_factory=dict)

    def objective(self, name: str) -> float:
        if name == "accuracy":
            return float("-inf") if self.accuracy is None else self.accuracy
        if name == "flops":
            return -float(self.flops)
        if name == "params":
            return -float(self.params)
        return float(self.extra[name])


@runtime_checkable
class SearchStrategy(Protocol):
    """ask(n) proposes up to n distinct feasible archs (fewer, or none, when the strategy is
    exhausted); tell() reports each one's result, in the order asked.

    The driver answers a proposal it has already evaluated from its history (tell() is given
    the known result) instead of evaluating it again; a strategy that avoids such repeats
    itself wastes no ask. A plug-in whose ``ask()`` takes no argument and returns one arch
    (or None) still works: the driver asks it n times.
    """

    name: str

    def ask(self, n: int = 1) -> list[Arch]: ...

    def tell(self, obs: Observation) -> None: ...


CostFn = Callable[[Arch], tuple[int, int]]  # arch -> (params, flops)


class InfeasibleSpace(Exception):
    """No architecture within the limits could be found."""


def feasible_sample(space: ResolvedSpace, rng: random.Random, cost: CostFn, limits: Limits, tries: int = 20000) -> Arch:
    """Hierarchical samples until one is within the limits (cheap: analytic costs)."""
    for _ in range(tries):
        arch = sample(space, rng, "hierarchical")
        if limits.admits(*cost(arch)):
            return arch
    raise InfeasibleSpace(f"no architecture within the limits in {tries} samples")


def arch_key(arch: Arch) -> str:
    """A compact, canonical identity of an arch's choices (for de-duplication and history).

    Stated depths come last (``;s3:depth=4``), so the keys of archs without elastic depth are what
    they were before depth existed (histories and shared studies stay readable)."""
    parts = [f"{b.key}={b.op.signature}/{b.width}/{b.heads or 0}" for b in arch.blocks]
    parts += [f"{stage}:depth={d}" for stage, d in sorted(arch.depths.items())]
    return ";".join(parts)

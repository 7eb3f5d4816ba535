"""A synthetic, seeded accuracy table over a space: search strategies tested without training.

Accuracy is a sum of fixed random contributions, one per (block, choice), plus a small
seeded noise term per arch. The additive part makes the optimum known by construction
(each block's best choice) and its exact distribution over the space computable by
convolution, so "the top 1% of the space" is an exact threshold, not an estimate from
samples. Torch-free and microseconds per query: the evaluator of strategy tests and
``benchmarks/search_strategies.py``.
"""

from __future__ import annotations

import random

from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.base import arch_key
from trionet_dsl.space.resolve import ResolvedSpace

GRID = 1000  # contributions are integers in [0, GRID]: exact sums and an exact distribution


def _choice_key(sig: str, width: int, heads: int | None) -> str:
    return f"{sig}/{width}/{heads or 0}"


class TableEvaluator:
    """``arch -> {"accuracy": ...}`` from a seeded table; counts its queries.

    accuracy = 0.5 + 0.4 * (sum of contributions) / (blocks * GRID) + noise, where noise is
    uniform in [-noise, noise], fixed per (seed, arch). ``score(arch)`` is the noiseless
    integer sum that defines the ranking of the space.
    """

    def __init__(self, space: ResolvedSpace, seed: int = 0, noise: float = 0.002) -> None:
        rng = random.Random(seed)
        self.seed, self.noise = seed, noise
        self.table: list[dict[str, int]] = [
            {_choice_key(c.op.signature, c.width, c.heads): rng.randint(0, GRID) for c in b.choices}
            for b in space.blocks
        ]
        self.size = space.size
        self.queries = 0

    def score(self, arch: Arch) -> int:
        """The noiseless additive score (an integer): what "top 1%" is measured on."""
        return sum(
            t[_choice_key(b.op.signature, b.width, b.heads)] for t, b in zip(self.table, arch.blocks, strict=True)
        )

    def optimum(self) -> int:
        """The best score in the space, by construction: each block's best choice."""
        return sum(max(t.values()) for t in self.table)

    def top_threshold(self, fraction: float) -> int:
        """The largest score T with at least ``fraction`` of the space scoring >= T (exact).

        The distribution of the sum over every arch of the space is the convolution of the
        blocks' value histograms (blocks choose independently).
        """
        dist = {0: 1}
        for t in self.table:
            nxt: dict[int, int] = {}
            for s, n in dist.items():
                for v in t.values():
                    nxt[s + v] = nxt.get(s + v, 0) + n
            dist = nxt
        total = sum(dist.values())
        need, seen = fraction * total, 0
        for s in sorted(dist, reverse=True):
            seen += dist[s]
            if seen >= need:
                return s
        return min(dist)

    def __call__(self, arch: Arch) -> dict[str, float]:
        self.queries += 1
        eps = random.Random(f"{self.seed}:{arch_key(arch)}").uniform(-self.noise, self.noise)
        return {"accuracy": 0.5 + 0.4 * self.score(arch) / (len(self.table) * GRID) + eps}

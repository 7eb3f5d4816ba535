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


def _mix(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    """The histogram of the sum of two independent parts, given each part's histogram."""
    out: dict[int, int] = {}
    for s, n in a.items():
        for t, m in b.items():
            out[s + t] = out.get(s + t, 0) + n * m
    return out


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
        self.by_key = {b.key: t for b, t in zip(space.blocks, self.table, strict=True)}
        self.depths = [(len(blocks), space.depth_choices[stage]) for stage, blocks in space.by_stage.items()]
        self.elastic = bool(space.elastic)

    @property
    def stages(self) -> list[tuple[list[dict[str, int]], tuple[int, ...]]]:
        """Per stage: its blocks' tables and its depth choices (without elastic depth: every block
        is a stage of one fixed depth, so ``table`` may be narrowed to some blocks)."""
        if not self.elastic:
            return [([t], (1,)) for t in self.table]
        out, start = [], 0
        for n, depths in self.depths:
            out.append((self.table[start : start + n], depths))
            start += n
        return out

    def score(self, arch: Arch) -> int:
        """The noiseless additive score (an integer) of the blocks the arch has: what "top 1%" is measured on."""
        return sum(self.by_key[b.key][_choice_key(b.op.signature, b.width, b.heads)] for b in arch.blocks)

    def optimum(self) -> int:
        """The best score in the space, by construction: each block's best choice (at the depth whose
        first blocks' bests sum highest)."""
        return sum(max(sum(max(t.values()) for t in ts[:d]) for d in depths) for ts, depths in self.stages)

    def top_threshold(self, fraction: float) -> int:
        """The largest score T with at least ``fraction`` of the space scoring >= T (exact).

        The distribution of the sum over every arch of the space is the convolution of the
        blocks' value histograms (blocks choose independently); under elastic depth a stage's histogram
        is the sum, over its depths ``d``, of the convolution of its first ``d`` blocks' histograms.
        """
        dist = {0: 1}
        for ts, depths in self.stages:
            stage: dict[int, int] = {}
            prefix = {0: 1}
            for d in range(1, max(depths) + 1):
                block: dict[int, int] = {}
                for v in ts[d - 1].values():
                    block[v] = block.get(v, 0) + 1
                prefix = _mix(prefix, block)
                if d in depths:
                    for s, n in prefix.items():
                        stage[s] = stage.get(s, 0) + n
            dist = _mix(dist, stage)
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

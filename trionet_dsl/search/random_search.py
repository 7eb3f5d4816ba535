"""Random search: hierarchical samples within the limits, never the same arch twice."""

from __future__ import annotations

import random

from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.base import CostFn, InfeasibleSpace, Limits, Observation, arch_key, feasible_sample
from trionet_dsl.space.resolve import ResolvedSpace


class RandomSearch:
    name = "random"

    def __init__(self, space: ResolvedSpace, cost: CostFn, limits: Limits, seed: int = 0, **_: object) -> None:
        self.space, self.cost, self.limits = space, cost, limits
        self.rng = random.Random(seed)
        self.seen: set[str] = set()

    def ask(self, n: int = 1) -> list[Arch]:
        """Up to ``n`` distinct archs never proposed before (fewer once 1000 draws find none)."""
        out: list[Arch] = []
        while len(out) < n:
            arch = self._one()
            if arch is None:
                break
            out.append(arch)
        return out

    def _one(self) -> Arch | None:
        for _ in range(1000):
            try:
                arch = feasible_sample(self.space, self.rng, self.cost, self.limits)
            except InfeasibleSpace:
                return None
            if arch_key(arch) not in self.seen:
                self.seen.add(arch_key(arch))
                return arch
        return None

    def tell(self, obs: Observation) -> None:
        self.seen.add(arch_key(obs.arch))

"""Regularized (aging) evolution, Real et al. 2019, with space-respecting mutation and crossover.

Each step: a tournament of ``sample_size`` from the population picks a parent (best
accuracy); the child is a mutation of it, or with probability ``crossover`` a per-block
uniform crossover with a second tournament winner, then mutated. Children outside the
limits are redrawn. The oldest member dies once the population is full (aging).
"""

from __future__ import annotations

import random
from collections import deque
from typing import cast

from trionet_dsl.lang.ir import Arch, ArchBlock
from trionet_dsl.search.base import CostFn, InfeasibleSpace, Limits, Observation, arch_key, feasible_sample
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.space.sampling import sample_choice


class Evolution:
    name = "evolution"

    def __init__(
        self,
        space: ResolvedSpace,
        cost: CostFn,
        limits: Limits,
        seed: int = 0,
        population: int = 20,
        sample_size: int = 10,
        mutation_rate: float | None = None,
        crossover: float = 0.3,
        **_: object,
    ) -> None:
        self.space, self.cost, self.limits = space, cost, limits
        self.rng = random.Random(seed)
        self.population_size = population
        self.sample_size = max(1, min(sample_size, population))
        self.mutation_rate = mutation_rate if mutation_rate is not None else 1.0 / max(1, len(space.blocks))
        self.crossover = crossover
        self.warmup, self.warmup_name = population, "its population is sampled at random"
        self.population: deque[Observation] = deque()
        self.seen: set[str] = set()

    # -- operators
    def mutate(self, arch: Arch) -> Arch:
        """Change op, width or heads of some existing blocks, or the depth of some elastic stages (at
        least one change), always to valid choices. A stage made deeper gets its new blocks drawn by
        Hierarchical Sampling; one made shallower drops its last blocks."""
        rs = self.space
        depth = rs.depths(arch)
        by = {b.key: b for b in arch.blocks}
        genes: list[int | str] = [i for i, b in enumerate(rs.blocks) if b.num_choices > 1 and b.index < depth[b.stage]]
        genes += rs.elastic  # one gene per elastic stage: its depth (none without elastic depth: same draws)
        if not genes:
            return arch
        chosen = [g for g in genes if self.rng.random() < self.mutation_rate] or [self.rng.choice(genes)]
        for g in chosen:
            if isinstance(g, str):
                depth[g] = self.rng.choice([d for d in rs.depth_choices[g] if d != depth[g]])
                continue
            rb, ab = rs.blocks[g], by[rs.blocks[g].key]
            what = self.rng.choice(("op", "width", "heads"))
            opt = rb.option(ab.op)
            if what == "width" and len(rb.widths) > 1:
                new = ab.model_copy(update={"width": self.rng.choice([w for w in rb.widths if w != ab.width])})
            elif what == "heads" and opt is not None and len(opt.heads) > 1:
                new = ab.model_copy(update={"heads": self.rng.choice([h for h in opt.heads if h != ab.heads])})
            else:
                new = rb.arch_block(sample_choice(rb, self.rng, "hierarchical"))
            by[rb.key] = new
        blocks = []
        for rb in rs.blocks:
            if rb.index < depth[rb.stage]:
                kept = by.get(rb.key)
                blocks.append(kept if kept is not None else rb.arch_block(sample_choice(rb, self.rng, "hierarchical")))
        return arch.model_copy(update={"blocks": tuple(blocks), "depths": {s: depth[s] for s in rs.elastic}})

    def cross(self, a: Arch, b: Arch) -> Arch:
        """Uniform crossover: each elastic stage's depth, then each block, from either parent (blocks
        are independent choices; a block only the deeper parent has comes from it)."""
        rs = self.space
        da, db = rs.depths(a), rs.depths(b)
        depth = da | {s: da[s] if self.rng.random() < 0.5 else db[s] for s in rs.elastic}
        ba, bb = {x.key: x for x in a.blocks}, {y.key: y for y in b.blocks}
        blocks = []
        for rb in rs.blocks:
            if rb.index >= depth[rb.stage]:
                continue
            x, y = ba.get(rb.key), bb.get(rb.key)
            if x is None or y is None:
                blocks.append(cast(ArchBlock, x or y))
            else:
                blocks.append(x if self.rng.random() < 0.5 else y)
        return a.model_copy(update={"blocks": tuple(blocks), "depths": {s: depth[s] for s in rs.elastic}})

    def tournament(self) -> Observation:
        pool = self.rng.sample(list(self.population), self.sample_size)
        return max(pool, key=lambda o: o.objective("accuracy"))

    # -- protocol
    def ask(self, n: int = 1) -> list[Arch]:
        """Up to ``n`` distinct children of the current population (random samples while the
        population fills); a batch is bred from the population as it was before the batch."""
        out: list[Arch] = []
        taken: set[str] = set()
        while len(out) < n:
            arch = self._one(taken, len(self.population) + len(out) < self.population_size)
            if arch is None:
                break
            taken.add(arch_key(arch))
            out.append(arch)
        return out

    def _one(self, taken: set[str], warming: bool) -> Arch | None:
        def new(a: Arch) -> bool:
            return arch_key(a) not in self.seen and arch_key(a) not in taken

        def random_new() -> Arch | None:
            """A feasible random arch not seen or taken (at most 100 draws)."""
            for _ in range(100):
                try:
                    arch = feasible_sample(self.space, self.rng, self.cost, self.limits)
                except InfeasibleSpace:
                    return None
                if new(arch):
                    return arch
            return None

        if warming:
            return random_new()
        for _ in range(200):
            parent = self.tournament().arch
            if self.rng.random() < self.crossover:
                parent = self.cross(parent, self.tournament().arch)
            child = self.mutate(parent)
            if self.limits.admits(*self.cost(child)) and new(child):
                return child
        return random_new()  # the population breeds nothing new: fall back to a random arch

    def tell(self, obs: Observation) -> None:
        self.seen.add(arch_key(obs.arch))
        self.population.append(obs)
        if len(self.population) > self.population_size:
            self.population.popleft()

"""Regularized (aging) evolution, Real et al. 2019, with space-respecting mutation and crossover.

Each step: a tournament of ``sample_size`` from the population picks a parent (best
accuracy); the child is a mutation of it, or with probability ``crossover`` a per-block
uniform crossover with a second tournament winner, then mutated. Children outside the
limits are redrawn. The oldest member dies once the population is full (aging).
"""

from __future__ import annotations

import random
from collections import deque

from trionet_dsl.lang.ir import Arch
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
        """Change op, width or heads of some blocks (at least one), always to valid choices."""
        blocks = list(arch.blocks)
        idx = [i for i, b in enumerate(self.space.blocks) if b.num_choices > 1]
        if not idx:
            return arch
        chosen = [i for i in idx if self.rng.random() < self.mutation_rate] or [self.rng.choice(idx)]
        for i in chosen:
            rb, ab = self.space.blocks[i], blocks[i]
            what = self.rng.choice(("op", "width", "heads"))
            opt = rb.option(ab.op)
            if what == "width" and len(rb.widths) > 1:
                new = ab.model_copy(update={"width": self.rng.choice([w for w in rb.widths if w != ab.width])})
            elif what == "heads" and opt is not None and len(opt.heads) > 1:
                new = ab.model_copy(update={"heads": self.rng.choice([h for h in opt.heads if h != ab.heads])})
            else:
                new = rb.arch_block(sample_choice(rb, self.rng, "hierarchical"))
            blocks[i] = new
        return arch.model_copy(update={"blocks": tuple(blocks)})

    def cross(self, a: Arch, b: Arch) -> Arch:
        """Uniform crossover: each block from either parent (blocks are independent choices)."""
        blocks = tuple(x if self.rng.random() < 0.5 else y for x, y in zip(a.blocks, b.blocks, strict=True))
        return a.model_copy(update={"blocks": blocks})

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

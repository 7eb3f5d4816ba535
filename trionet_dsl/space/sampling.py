"""Drawing sub-networks from a space.

``hierarchical`` is TrioNet's Hierarchical Sampling: per block, first the operator
uniformly, then its width and heads uniformly among *that operator's* options, so each
operator is trained equally often however many width/head options it has. ``uniform``
draws uniformly over all (operator, width, heads) combinations of the block, which
favours operators with more options (attention, with heads) — the imbalance the paper
fixes. ``sandwich`` (BigNAS) gives the widest, the narrowest and random sub-networks.

Elastic depth (Once-for-All): both strategies first draw a stage's depth uniformly among its
choices, then the choices of the blocks that exist at that depth, stage by stage; the extremes take
the largest (smallest) depth. A stage of fixed depth draws nothing for its depth, so spaces without
elastic depth give the same archs for the same seed as before depth existed.
"""

from __future__ import annotations

import random
from typing import Literal

from trionet_dsl.lang.ir import Arch, ArchBlock
from trionet_dsl.lang.operators import REGISTRY
from trionet_dsl.space.resolve import Choice, OpOption, ResolvedBlock, ResolvedSpace

Strategy = Literal["hierarchical", "uniform"]
STRATEGIES: tuple[str, ...] = ("hierarchical", "uniform", "sandwich")


def _at_extreme(b: ResolvedBlock, opt: OpOption, largest: bool) -> ArchBlock:
    """Block ``b`` with operator option ``opt`` at its largest (or smallest) width and heads."""
    pick = max if largest else min
    return b.arch_block(Choice(opt.op, pick(b.widths), pick(opt.heads) if opt.heads else None))


def sample_choice(b: ResolvedBlock, rng: random.Random, strategy: Strategy = "hierarchical") -> Choice:
    """One block's (operator, width, heads)."""
    if strategy == "uniform":
        return b.choices[rng.randrange(len(b.choices))]
    if strategy != "hierarchical":
        raise ValueError(f"unknown sampling strategy {strategy!r}; expected one of {STRATEGIES[:2]}")
    opt = b.options[rng.randrange(len(b.options))]
    width = b.widths[rng.randrange(len(b.widths))]
    heads = opt.heads[rng.randrange(len(opt.heads))] if opt.heads else None
    return Choice(opt.op, width, heads)


def sample_depth(space: ResolvedSpace, stage: str, rng: random.Random) -> int:
    """A stage's depth, uniform among its choices (no draw for a fixed stage)."""
    choices = space.depth_choices[stage]
    return choices[rng.randrange(len(choices))] if len(choices) > 1 else choices[0]


def _elastic_depths(space: ResolvedSpace, depths: dict[str, int]) -> dict[str, int]:
    """The depths an arch states: those of the elastic stages (what ``check_arch`` gives)."""
    return {name: depths[name] for name in space.elastic}


def sample(
    space: ResolvedSpace, rng: random.Random, strategy: Strategy = "hierarchical", name: str = "sampled"
) -> Arch:
    """A random architecture of ``space`` (reproducible from the state of ``rng``): per stage its
    depth, then each existing block's choice."""
    blocks: list[ArchBlock] = []
    depths: dict[str, int] = {}
    for stage, stage_blocks in space.by_stage.items():
        depths[stage] = sample_depth(space, stage, rng)
        blocks += [b.arch_block(sample_choice(b, rng, strategy)) for b in stage_blocks[: depths[stage]]]
    return Arch(name=name, space=space.name, blocks=tuple(blocks), depths=_elastic_depths(space, depths))


def extreme(space: ResolvedSpace, rng: random.Random, largest: bool, name: str | None = None) -> Arch:
    """Widest (or narrowest) width, most (or fewest) heads and largest (or smallest) depth.

    Operators have no order by size, so each block's operator is drawn uniformly: the
    sandwich rule then trains every operator's largest and smallest configuration.
    """
    depths = {stage: (max if largest else min)(d) for stage, d in space.depth_choices.items()}
    blocks = [
        _at_extreme(b, b.options[rng.randrange(len(b.options))], largest)
        for b in space.blocks
        if b.index < depths[b.stage]
    ]
    return Arch(
        name=name or ("largest" if largest else "smallest"),
        space=space.name,
        blocks=tuple(blocks),
        depths=_elastic_depths(space, depths),
    )


def sandwich(
    space: ResolvedSpace, rng: random.Random, n_random: int = 2, strategy: Strategy = "hierarchical"
) -> list[Arch]:
    """BigNAS's sandwich rule for one training step: largest, smallest and ``n_random`` others."""
    return [
        extreme(space, rng, True),
        extreme(space, rng, False),
        *(sample(space, rng, strategy) for _ in range(n_random)),
    ]


def uniform_op(space: ResolvedSpace, kind: str, largest: bool = True, name: str | None = None) -> Arch:
    """Every block with the first operator of ``kind`` at its largest (or smallest) width/heads
    (and depth).

    Gives the single-operator baselines (all-conv, all-local, all-axial) of a space. A
    ``kind`` the operator registry does not know is a KeyError naming the ones it does.
    """
    REGISTRY[kind]
    depths = {stage: (max if largest else min)(d) for stage, d in space.depth_choices.items()}
    blocks = []
    for b in space.blocks:
        if b.index >= depths[b.stage]:
            continue
        opts = [o for o in b.options if o.op.kind == kind]
        if not opts:
            raise ValueError(f"block {b.key} has no {kind} operator")
        blocks.append(_at_extreme(b, opts[0], largest))
    return Arch(
        name=name or f"all_{kind}", space=space.name, blocks=tuple(blocks), depths=_elastic_depths(space, depths)
    )

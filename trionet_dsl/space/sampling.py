"""Drawing sub-networks from a space.

``hierarchical`` is TrioNet's Hierarchical Sampling: per block, first the operator
uniformly, then its width and heads uniformly among *that operator's* options, so each
operator is trained equally often however many width/head options it has. ``uniform``
draws uniformly over all (operator, width, heads) combinations of the block, which
favours operators with more options (attention, with heads) — the imbalance the paper
fixes. ``sandwich`` (BigNAS) gives the widest, the narrowest and random sub-networks.
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


def sample(
    space: ResolvedSpace, rng: random.Random, strategy: Strategy = "hierarchical", name: str = "sampled"
) -> Arch:
    """A random architecture of ``space`` (reproducible from the state of ``rng``)."""
    blocks = tuple(b.arch_block(sample_choice(b, rng, strategy)) for b in space.blocks)
    return Arch(name=name, space=space.name, blocks=blocks)


def extreme(space: ResolvedSpace, rng: random.Random, largest: bool, name: str | None = None) -> Arch:
    """Widest (or narrowest) width and most (or fewest) heads in every block.

    Operators have no order by size, so each block's operator is drawn uniformly: the
    sandwich rule then trains every operator's largest and smallest configuration.
    """
    blocks = [_at_extreme(b, b.options[rng.randrange(len(b.options))], largest) for b in space.blocks]
    return Arch(name=name or ("largest" if largest else "smallest"), space=space.name, blocks=tuple(blocks))


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
    """Every block with the first operator of ``kind`` at its largest (or smallest) width/heads.

    Gives the single-operator baselines (all-conv, all-local, all-axial) of a space. A
    ``kind`` the operator registry does not know is a KeyError naming the ones it does.
    """
    REGISTRY[kind]
    blocks = []
    for b in space.blocks:
        opts = [o for o in b.options if o.op.kind == kind]
        if not opts:
            raise ValueError(f"block {b.key} has no {kind} operator")
        blocks.append(_at_extreme(b, opts[0], largest))
    return Arch(name=name or f"all_{kind}", space=space.name, blocks=tuple(blocks))

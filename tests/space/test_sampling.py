"""Hierarchical vs uniform sampling: the paper's imbalance, measured."""

from __future__ import annotations

import random
from collections import Counter

from trionet_dsl import check_arch
from trionet_dsl.space.sampling import extreme, sample, sandwich, uniform_op


def _op_freq(space, strategy, n=4000, seed=0):
    rng = random.Random(seed)
    counts = Counter()
    for _ in range(n):
        for b in sample(space, rng, strategy).blocks:
            counts[b.op.kind] += 1
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def test_uniform_favours_attention_hierarchical_does_not(small_space):
    # conv has 3 options (widths), local and axial 3 widths x 2 heads = 6 each: 3 + 6 + 6 = 15
    uni = _op_freq(small_space, "uniform")
    hier = _op_freq(small_space, "hierarchical")
    assert abs(uni["conv"] - 1 / 5) < 0.01
    assert abs(uni["local"] - 2 / 5) < 0.01
    assert all(abs(hier[k] - 1 / 3) < 0.01 for k in ("conv", "local", "axial"))


def test_samples_are_valid_and_seeded(small_space):
    a = [sample(small_space, random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(1)
    for _ in range(50):
        arch = sample(small_space, rng, "uniform")
        assert check_arch(small_space, arch) == arch


def test_sandwich_and_extremes(small_space):
    rng = random.Random(0)
    big, small, *rest = sandwich(small_space, rng, n_random=3)
    assert len(rest) == 3
    assert all(b.width == rb.max_width for b, rb in zip(big.blocks, small_space.blocks, strict=True))
    assert all(b.width == min(rb.widths) for b, rb in zip(small.blocks, small_space.blocks, strict=True))
    assert all(b.heads in (None, 4) for b in big.blocks)
    assert {b.op.kind for b in uniform_op(small_space, "axial").blocks} == {"axial"}
    assert extreme(small_space, random.Random(3), True) == extreme(small_space, random.Random(3), True)

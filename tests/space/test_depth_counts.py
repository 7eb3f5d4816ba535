"""Elastic depth in the space stage: counts and costs against brute-force enumeration, graph,
sampling, arch checks."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
from helpers import raised

from trionet_dsl import check_arch
from trionet_dsl.lang.ir import Arch
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.graph import build_graph, space_size, stage_summaries
from trionet_dsl.space.loader import compile_arch_text, compile_space_text
from trionet_dsl.space.sampling import extreme, sample, sandwich, uniform_op

TINY = """
space tiny {
  input 3x8x8
  classes 3
  block bottleneck expansion 2 { op conv(kernel=3) | local(span=3); width 4 | 8; heads 2 }
  stage s1 blocks 1 | 3 width 4 stride 1 { block 2 { op conv(kernel=3); width 4 } }
  stage s2 blocks 2..3 width 8 stride 2 { block 1 { width 8 } }
}
"""


@pytest.fixture(scope="module")
def tiny():
    return compile_space_text(TINY, "tiny.space")


def every_arch(rs) -> list[Arch]:
    """Brute force: every depth combination, then every choice of every existing block."""
    out = []
    stages = list(rs.depth_choices)
    for depths in itertools.product(*(rs.depth_choices[s] for s in stages)):
        depth = dict(zip(stages, depths, strict=True))
        live = [b for b in rs.blocks if b.index < depth[b.stage]]
        for picks in itertools.product(*(b.choices for b in live)):
            blocks = tuple(b.arch_block(c) for b, c in zip(live, picks, strict=True))
            out.append(Arch(name="x", space=rs.name, blocks=blocks, depths={s: depth[s] for s in rs.elastic}))
    return out


def test_size_counts_sub_networks_of_every_depth(tiny):
    archs = every_arch(tiny)
    assert len({a for a in archs}) == len(archs)
    for a in archs:
        assert check_arch(tiny, a) == a  # each one is a valid, canonical arch of the space
    # s1: depth 1 -> 4 (2 ops x 2 widths); depth 3 -> 4*4*1 = 16 (block 2: conv at width 4 only);
    # s2: depth 2 -> 4*2 (block 1: width 8 only) = 8; depth 3 -> 8*4 = 32
    assert tiny.stage_size("s1") == 4 + 16 and tiny.stage_size("s2") == 8 + 32
    assert tiny.size == len(archs) == 20 * 40
    assert space_size(build_graph(tiny)) == len(archs)


def test_min_max_costs_over_depths(tiny):
    model = CostModel(tiny)
    costs = [model(a) for a in every_arch(tiny)]
    ext = model.extremes()
    assert ext["params_min"] == min(p for p, _ in costs) and ext["params_max"] == max(p for p, _ in costs)
    assert ext["flops_min"] == min(f for _, f in costs) and ext["flops_max"] == max(f for _, f in costs)
    # the extremes are reached at the smallest/largest depths (costs only grow with blocks)
    lo, hi = extreme(tiny, random.Random(0), False), extreme(tiny, random.Random(0), True)
    assert lo.depths == {"s1": 1, "s2": 2} and hi.depths == {"s1": 3, "s2": 3}


def test_graph_marks_optional_blocks(tiny):
    g = build_graph(tiny)
    assert g.graph["depths"] == {"s1": [1, 3], "s2": [2, 3]}
    optional = {d["block"] for _, d in g.nodes(data=True) if d.get("optional")}
    assert optional == {"s1.1", "s1.2", "s2.2"}
    sizes = {s.name: s.size for s in stage_summaries(g)}
    assert sizes == {"s1": 20, "s2": 40}
    # an arch's graph holds only the blocks it has
    a = compile_arch_text(
        "arch a of tiny { s1 depth 1; s1.0 conv(kernel=3) width 4; s2 depth 2; "
        "s2.0 conv(kernel=3) width 8; s2.1 local(span=3) width 8 heads 2 }",
        space=tiny,
    ).arch
    ga = build_graph(tiny, a)
    assert {d["block"] for _, d in ga.nodes(data=True) if d["kind"] == "op"} == {"s1.0", "s2.0", "s2.1"}
    assert space_size(ga) == 1


def test_sampling_draws_depth_first_uniformly_then_existing_blocks(tiny):
    rng = random.Random(0)
    seen: Counter = Counter()
    for _ in range(3000):
        a = sample(tiny, rng, "hierarchical")
        assert check_arch(tiny, a) == a
        seen[(a.depths["s1"], a.depths["s2"])] += 1
        assert {b.key for b in a.blocks} == {f"{s}.{i}" for s, d in a.depths.items() for i in range(d)}
    assert set(seen) == {(1, 2), (1, 3), (3, 2), (3, 3)}
    assert all(abs(n / 3000 - 0.25) < 0.035 for n in seen.values())  # depth uniform per stage, not per arch
    u = [sample(tiny, random.Random(5), "uniform") for _ in range(2)]
    assert u[0] == u[1] and check_arch(tiny, u[0]) == u[0]
    big, small, *_ = sandwich(tiny, random.Random(1))
    assert big.depths == {"s1": 3, "s2": 3} and small.depths == {"s1": 1, "s2": 2}
    assert uniform_op(tiny, "conv", largest=False).depths == {"s1": 1, "s2": 2}


def test_fixed_depth_spaces_sample_as_before(small_space):
    """No depth draw for a fixed stage: the same seed gives the same arch, and no depths are stated."""
    a = sample(small_space, random.Random(3))
    assert a.depths == {} and len(a.blocks) == len(small_space.blocks)
    assert small_space.elastic == () and small_space.size == 15**6


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("s1 depth 2", "depth 2 is not a choice"),
        ("s9 depth 1", "has no stage 's9'"),
        ("s1 depth 1; s1.1 conv(kernel=3) width 4", "past the depth 1"),
    ],
)
def test_arch_depth_errors_are_located(tiny, line, message):
    text = (
        f"arch a of tiny {{\n  {line}\n  s1.0 conv(kernel=3) width 4\n"
        "  s2 depth 2\n  s2.0 conv(kernel=3) width 8\n  s2.1 conv(kernel=3) width 8\n}\n"
    )
    err = raised(compile_arch_text, text, "a.arch", tiny)
    assert message in err.message and err.line == 2, str(err)


def test_missing_blocks_without_depth_hint_the_depth_line(tiny):
    err = raised(
        compile_arch_text, "arch a of tiny { s1.0 conv(kernel=3) width 4; s2.0 conv(kernel=3) width 8 }", "a", tiny
    )
    assert "does not fix" in err.message and "'s1 depth 1'" in (err.hint or "")


def test_stated_full_depth_of_a_fixed_stage_is_accepted_and_dropped(small_space):
    a = sample(small_space, random.Random(0))
    stated = a.model_copy(update={"depths": {"s1": 2}})
    assert check_arch(small_space, stated) == a

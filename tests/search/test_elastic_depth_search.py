"""Search over elastic depth: mutation and crossover keep depths valid, keys and dedupe see depth,
Optuna's encoding and the tabular evaluator cover it."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from trionet_dsl import check_arch, load
from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.base import Limits, Observation, arch_key
from trionet_dsl.search.driver import run_search
from trionet_dsl.search.evolution import Evolution
from trionet_dsl.search.tabular import TableEvaluator
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.sampling import sample

SPACES = Path(__file__).resolve().parents[2] / "spaces"


@pytest.fixture(scope="module")
def elastic():
    return load(SPACES / "trionet_small_elastic.space")


def test_mutation_and_crossover_keep_depths_valid_and_reach_every_depth(elastic):
    evo = Evolution(elastic, CostModel(elastic), Limits(), seed=0, mutation_rate=0.3)
    rng = random.Random(1)
    depths_seen = set()
    for _ in range(300):
        a, b = sample(elastic, rng), sample(elastic, rng)
        for child in (evo.mutate(a), evo.cross(a, b), evo.mutate(evo.cross(a, b))):
            assert check_arch(elastic, child) == child  # valid and canonical: blocks = first d of each stage
            depths_seen |= {(s, d) for s, d in child.depths.items()}
        # a crossover child's depths each come from a parent
        c = evo.cross(a, b)
        assert all(c.depths[s] in (a.depths[s], b.depths[s]) for s in elastic.elastic)
    assert depths_seen == {(s, d) for s in ("s1", "s2", "s3") for d in (1, 2, 3)}


def test_mutation_changes_depth_when_it_is_the_only_choice():
    rs = compile_space_text(
        "space d { input 3x8x8 classes 2 block bottleneck { op conv(kernel=3) } stage s1 blocks 1..3 width 4 }"
    )
    evo = Evolution(rs, CostModel(rs), Limits(), seed=0)
    a = sample(rs, random.Random(0))
    for _ in range(20):
        b = evo.mutate(a)
        assert b.depths["s1"] != a.depths["s1"] and check_arch(rs, b) == b
        a = b


def test_arch_key_includes_depth_and_old_keys_are_unchanged(small_space, elastic):
    a = sample(small_space, random.Random(0))
    assert "depth" not in arch_key(a)  # a space without elastic depth: keys as before
    e = sample(elastic, random.Random(0))
    assert arch_key(e).endswith(";".join(f"{s}:depth={d}" for s, d in sorted(e.depths.items())))
    assert arch_key(e) != arch_key(e.model_copy(update={"depths": {**e.depths, "s1": 9}}))


class _Fixed:
    """A plug-in strategy proposing a fixed list (the driver answers repeats from its history)."""

    name = "fixed"

    def __init__(self, archs: list[Arch]) -> None:
        self.archs, self.told = list(archs), []

    def ask(self, n: int = 1) -> list[Arch]:
        out, self.archs = self.archs[:n], self.archs[n:]
        return out

    def tell(self, obs: Observation) -> None:
        self.told.append(obs)


def test_driver_dedupes_by_depth():
    rs = compile_space_text(
        "space d { input 3x8x8 classes 2 block bottleneck { op conv(kernel=3) } stage s1 blocks 1..3 width 4 }"
    )
    by_depth = {d: Arch(name="a", space="d", blocks=(), depths={"s1": d}) for d in (1, 2, 3)}
    by_depth = {d: check_arch(rs, a.model_copy(update={"blocks": ()})) for d, a in by_depth.items()}
    full_unsaid = by_depth[3].model_copy(update={"depths": {}})  # the full depth, not stated
    proposals = [by_depth[1], by_depth[2], by_depth[1], full_unsaid, by_depth[3]]
    calls: list[int] = []

    def evaluate(arch):
        calls.append(len(arch.blocks))
        return {"accuracy": len(arch.blocks) / 10}

    res = run_search(
        rs, _Fixed(proposals), evaluate, CostModel(rs), Limits(), budget=5, progress=False, warn=lambda m: None
    )
    assert calls == [1, 2, 3]  # depth 1 again and the full depth stated or not: answered from the history
    assert res.repeats == 2 and len(res.history) == 3
    assert res.best.arch.depths == {"s1": 3}


@pytest.mark.parametrize("name", ["random", "evolution", "tpe", "nsga2"])
def test_strategies_search_depth(elastic, name):
    table = TableEvaluator(elastic, seed=0)
    res = run_search(
        elastic, name, table, CostModel(elastic), Limits(), budget=40, seed=2, progress=False, warn=lambda m: None
    )
    depths = set()
    for o in res.history:
        assert check_arch(elastic, o.arch) == o.arch
        depths |= set(o.arch.depths.values())
    assert depths == {1, 2, 3}


def test_tabular_threshold_and_optimum_over_depths():
    """The exact distribution over an elastic space, against enumerating every arch."""
    rs = compile_space_text(
        "space d { input 3x8x8 classes 2 block bottleneck { op conv(kernel=3) | conv(kernel=5); width 2 | 4 } "
        "stage s1 blocks 1 | 3 width 4 stage s2 blocks 1..2 width 4 stride 2 }"
    )
    table = TableEvaluator(rs, seed=3)
    scores = []
    for d1, d2 in itertools.product((1, 3), (1, 2)):
        live = [b for b in rs.blocks if b.index < {"s1": d1, "s2": d2}[b.stage]]
        for picks in itertools.product(*(b.choices for b in live)):
            arch = Arch(name="x", space="d", blocks=tuple(b.arch_block(c) for b, c in zip(live, picks, strict=True)))
            scores.append(table.score(arch))
    assert len(scores) == rs.size
    assert table.optimum() == max(scores)
    for frac in (0.01, 0.1, 0.5):
        t = table.top_threshold(frac)
        assert sum(s >= t for s in scores) >= frac * len(scores) > sum(s >= t + 1 for s in scores)

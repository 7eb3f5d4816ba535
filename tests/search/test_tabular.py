"""Strategies on a synthetic table whose optimum and top 1% are known exactly: no repeated
query, better than random search, reproducible batches, the driver's repeat answering."""

from __future__ import annotations

import itertools
import random
import warnings

import pytest

from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.base import Limits, arch_key
from trionet_dsl.search.driver import run_search
from trionet_dsl.search.tabular import TableEvaluator
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.sampling import sample

STRATEGIES = ["random", "evolution", "tpe", "nsga2"]
BUDGET = 60  # the stated budget: 60 queries of a 15^6 = 11.4 M arch space
SEEDS = range(4)


def _search(space, name, table, seed, budget=BUDGET, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_search(space, name, table, CostModel(space), Limits(), budget, seed=seed, progress=False, **kw)


def test_table_optimum_and_threshold_match_enumeration(small_space):
    """On the first three blocks (15^3 archs) enumeration gives the same optimum and top-1% cut."""
    table = TableEvaluator(small_space, seed=3)
    sub = TableEvaluator(small_space, seed=3)
    sub.table = sub.table[:3]
    scores = sorted((sum(c) for c in itertools.product(*(t.values() for t in sub.table))), reverse=True)
    assert sub.optimum() == scores[0]
    cut = sub.top_threshold(0.01)
    assert sum(s >= cut for s in scores) >= 0.01 * len(scores) > sum(s > cut for s in scores)
    # the full table: the arch of each block's best choice scores the optimum, and no sample beats it
    best = [max(t, key=t.__getitem__) for t in table.table]
    rng = random.Random(0)
    for _ in range(200):
        assert table.score(sample(small_space, rng)) <= table.optimum()
    assert sum(t[k] for t, k in zip(table.table, best, strict=True)) == table.optimum()


@pytest.mark.parametrize("name", STRATEGIES)
def test_no_strategy_repeats_a_query(small_space, name):
    table = TableEvaluator(small_space, seed=0)
    res = _search(small_space, name, table, seed=1, budget=80)
    keys = [arch_key(o.arch) for o in res.history]
    assert len(keys) == len(set(keys)) == table.queries == 80


def test_strategies_reach_the_top_percent_more_often_than_random(small_space):
    hits = {}
    for name in STRATEGIES:
        n = 0
        for seed in SEEDS:
            table = TableEvaluator(small_space, seed=seed)
            res = _search(small_space, name, table, seed=seed)
            n += table.score(res.best.arch) >= table.top_threshold(0.01)
        hits[name] = n
    for name in ("evolution", "tpe", "nsga2"):
        assert hits[name] > hits["random"], hits


@pytest.mark.parametrize("name", STRATEGIES)
def test_batch_of_four_is_reproducible(small_space, name):
    runs = [_search(small_space, name, TableEvaluator(small_space, seed=2), seed=7, budget=24, batch=4) for _ in "ab"]
    first, second = ([arch_key(o.arch) for o in r.history] for r in runs)
    assert first == second and len(set(first)) == 24


def test_batch_one_is_todays_ask_evaluate_tell(small_space):
    a = _search(small_space, "evolution", TableEvaluator(small_space), seed=5, budget=40)
    b = _search(small_space, "evolution", TableEvaluator(small_space), seed=5, budget=40, batch=1)
    assert [arch_key(o.arch) for o in a.history] == [arch_key(o.arch) for o in b.history]


class _Stubborn:
    """Proposes a fixed cycle of archs forever: after the first round every ask is a repeat."""

    name = "stubborn"

    def __init__(self, archs: list[Arch]) -> None:
        self.archs, self.i, self.told = archs, 0, []

    def ask(self) -> Arch | None:  # a legacy plug-in: no n
        arch = self.archs[self.i % len(self.archs)]
        self.i += 1
        return arch

    def tell(self, obs) -> None:
        self.told.append(obs)


def test_a_strategy_that_only_repeats_ends_with_a_message(small_space):
    rng = random.Random(0)
    archs = [sample(small_space, rng) for _ in range(3)]
    table = TableEvaluator(small_space)
    strat = _Stubborn(archs)
    said: list[str] = []
    res = run_search(
        small_space,
        strat,
        table,
        CostModel(small_space),
        Limits(),
        10,
        progress=False,
        warn=said.append,
        max_repeats=50,
    )
    assert table.queries == 3 and len(res.history) == 3  # never evaluated twice
    assert res.repeats == 50 and len(strat.told) == 53  # each repeat was told the known result
    assert [o.accuracy for o in strat.told[3:6]] == [o.accuracy for o in res.history]
    assert said and "stopped after 3 of 10" in said[-1] and "50 already-evaluated" in said[-1]


@pytest.mark.parametrize("name", ["tpe", "evolution"])
def test_resume_replays_answered_repeats_the_same_way(small_space, tmp_path, name):
    """Answered repeats are not in the history; a resumed search still ends where a whole one does."""
    full = _search(small_space, name, TableEvaluator(small_space), seed=4, budget=30, batch=2)
    table, hist = TableEvaluator(small_space), tmp_path / "h.jsonl"

    def cut(arch):
        if table.queries == 17:
            raise KeyboardInterrupt
        return table(arch)

    with pytest.raises(KeyboardInterrupt):
        _search(small_space, name, cut, seed=4, budget=30, batch=2, history_path=hist)
    table.queries = 0
    res = _search(small_space, name, table, seed=4, budget=30, batch=2, history_path=hist, resume=True)
    assert table.queries == 13
    assert [arch_key(o.arch) for o in res.history] == [arch_key(o.arch) for o in full.history]
    assert res.repeats == full.repeats

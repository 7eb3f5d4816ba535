"""Search strategies and the resumable search loop, on a synthetic objective (no training)."""

from __future__ import annotations

import json

import pytest

from trionet_dsl import check_arch
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.search.base import Limits, arch_key
from trionet_dsl.search.driver import pareto_front, run_search
from trionet_dsl.search.registry import make_strategy


def fake_cost(arch):
    """Monotone in width; attention a bit dearer: enough structure for limits to bite."""
    f = sum(b.width * (3 if b.op.kind == "conv" else 4) for b in arch.blocks)
    return f * 10, f


def fake_accuracy(arch):
    """Prefers local attention and wide blocks: a known optimum to find."""
    score = sum((b.op.kind == "local") + b.width / 64 for b in arch.blocks)
    return {"accuracy": score / (2 * len(arch.blocks))}


@pytest.mark.parametrize("name", ["random", "evolution", "tpe", "nsga2"])
def test_strategies_respect_space_and_limits(small_space, name):
    limits = Limits(max_flops=500)
    res = run_search(small_space, name, fake_accuracy, fake_cost, limits, budget=30, seed=1, progress=False)
    assert len(res.history) == 30
    for o in res.history:
        assert check_arch(small_space, o.arch) is not None
        assert o.flops <= 500
    assert res.best.accuracy == max(o.accuracy for o in res.history)


def test_evolution_beats_its_own_random_start(small_space):
    limits = Limits(max_flops=520)
    res = run_search(
        small_space,
        "evolution",
        fake_accuracy,
        fake_cost,
        limits,
        budget=150,
        seed=3,
        progress=False,
        strategy_options={"population": 16, "sample_size": 4},
    )
    first = max(o.accuracy for o in res.history[:16])
    assert res.best.accuracy > first


def test_same_seed_same_search(small_space):
    runs = [
        run_search(small_space, "evolution", fake_accuracy, fake_cost, Limits(), 40, seed=5, progress=False)
        for _ in range(2)
    ]
    assert [arch_key(o.arch) for o in runs[0].history] == [arch_key(o.arch) for o in runs[1].history]


def test_resume_replays_to_the_same_result(small_space, tmp_path):
    hist = tmp_path / "h.jsonl"
    full = run_search(small_space, "evolution", fake_accuracy, fake_cost, Limits(), 40, seed=2, progress=False)
    calls = []

    def counting(arch):
        calls.append(arch)
        if len(calls) == 25:
            raise KeyboardInterrupt
        return fake_accuracy(arch)

    with pytest.raises(KeyboardInterrupt):
        run_search(
            small_space, "evolution", counting, fake_cost, Limits(), 40, seed=2, history_path=hist, progress=False
        )
    assert len(hist.read_text().splitlines()) == 24
    calls.clear()
    resumed = run_search(
        small_space,
        "evolution",
        lambda a: (calls.append(a), fake_accuracy(a))[1],
        fake_cost,
        Limits(),
        40,
        seed=2,
        history_path=hist,
        resume=True,
        progress=False,
    )
    assert len(calls) == 16  # only the missing ones are evaluated
    assert [arch_key(o.arch) for o in resumed.history] == [arch_key(o.arch) for o in full.history]
    assert arch_key(resumed.best.arch) == arch_key(full.best.arch)
    with pytest.raises(SpaceError, match="does not match"):
        run_search(
            small_space,
            "evolution",
            fake_accuracy,
            fake_cost,
            Limits(),
            40,
            seed=99,
            history_path=hist,
            resume=True,
            progress=False,
        )
    rec = json.loads(hist.read_text().splitlines()[0])
    assert {"arch_key", "accuracy", "flops", "params"} <= set(rec)


def test_pareto_front_is_non_dominated(small_space):
    res = run_search(small_space, "random", fake_accuracy, fake_cost, Limits(), 60, seed=0, progress=False)
    front = pareto_front(res.history)
    assert front and [o.flops for o in front] == sorted(o.flops for o in front)
    for o in front:
        assert not any(
            p.accuracy >= o.accuracy and p.flops <= o.flops and (p.accuracy > o.accuracy or p.flops < o.flops)
            for p in res.history
        )


def test_unknown_strategy_and_impossible_limits(small_space):
    with pytest.raises(SpaceError, match="did you mean 'evolution'"):
        make_strategy("evolutoin", small_space, fake_cost, Limits())
    with pytest.raises(SpaceError, match="evaluated no architecture"):
        run_search(small_space, "random", fake_accuracy, fake_cost, Limits(max_flops=1), 5, progress=False)


def test_supernet_evaluator_calibrates_on_a_split_smaller_than_a_batch(small_space):
    """72 training images and 128-image batches: BN must still be recalibrated on real data."""
    import torch

    from trionet_dsl.nn.supernet import Supernet
    from trionet_dsl.search.evaluators import SupernetEvaluator
    from trionet_dsl.train.data import DataBundle

    x = torch.randn(72, 3, 32, 32)
    y = torch.zeros(72, dtype=torch.long)
    data = DataBundle.from_tensors(x, y, x[:8], y[:8], class_names=["0", "1"], pad=4, flip=False)
    ev = SupernetEvaluator(Supernet(small_space, seed=0), data, bn_batches=8, batch_size=128)
    assert [len(b) for b in ev.calib] == [72]


def test_resume_after_a_cut_line_drops_the_fragment(small_space, tmp_path):
    """kill -9 mid-write leaves half a line: resume must not append onto it (the file stays valid JSON lines)."""
    hist = tmp_path / "h.jsonl"
    full = run_search(
        small_space,
        "evolution",
        fake_accuracy,
        fake_cost,
        Limits(),
        12,
        seed=4,
        progress=False,
        history_path=tmp_path / "full.jsonl",
    )
    run_search(
        small_space, "evolution", fake_accuracy, fake_cost, Limits(), 6, seed=4, progress=False, history_path=hist
    )
    lines = hist.read_text().splitlines()
    hist.write_text("\n".join(lines[:5]) + "\n" + lines[5][:17])  # the 6th record cut short
    res = run_search(
        small_space,
        "evolution",
        fake_accuracy,
        fake_cost,
        Limits(),
        12,
        seed=4,
        progress=False,
        history_path=hist,
        resume=True,
    )
    recs = [json.loads(line) for line in hist.read_text().splitlines()]  # every line parses
    assert [r["i"] for r in recs] == list(range(12))
    assert [arch_key(o.arch) for o in res.history] == [arch_key(o.arch) for o in full.history]


def test_existing_history_is_not_truncated_without_resume(small_space, tmp_path):
    hist = tmp_path / "h.jsonl"
    run_search(small_space, "random", fake_accuracy, fake_cost, Limits(), 3, seed=1, progress=False, history_path=hist)
    before = hist.read_text()
    with pytest.raises(SpaceError, match="already exists"):
        run_search(
            small_space, "random", fake_accuracy, fake_cost, Limits(), 3, seed=1, progress=False, history_path=hist
        )
    assert hist.read_text() == before
    run_search(
        small_space,
        "random",
        fake_accuracy,
        fake_cost,
        Limits(),
        2,
        seed=1,
        progress=False,
        history_path=hist,
        overwrite=True,
    )
    assert len(hist.read_text().splitlines()) == 2

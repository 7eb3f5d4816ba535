"""--tensorboard and the metrics sinks: what the search and training loops log, read back.

The search's scalars are checked against the history they came from (a running maximum, the
front recomputed from scratch) and the hypervolume against a brute-force count of grid cells;
the TensorBoard files are read back with TensorBoard's own reader (skipped without the extra).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from trionet_dsl.app.cli import app
from trionet_dsl.app.searching import search_job
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.search.base import Limits, Observation, arch_key
from trionet_dsl.search.driver import hypervolume, pareto_front, run_search
from trionet_dsl.search.tabular import TableEvaluator
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.loader import load_space
from trionet_dsl.space.sampling import sample
from trionet_dsl.train.metric_sinks import JsonlSink, require_tensorboard

ROOT = Path(__file__).resolve().parents[2]
SPACE = ROOT / "spaces" / "trionet_small.space"
TINY = ROOT / "tests" / "data" / "tiny.space"
runner = CliRunner()


def _distinct_archs(n: int) -> list:
    rs, rng, out = load_space(SPACE), random.Random(0), {}
    while len(out) < n:
        arch = sample(rs, rng, "hierarchical")
        out.setdefault(arch_key(arch), arch)
    return list(out.values())


ARCHS = _distinct_archs(8)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 10)), min_size=1, max_size=8))
def test_hypervolume_is_the_dominated_share_of_the_box(points):
    """Against a count of the unit cells of a 12 x 10 grid that some point dominates."""
    obs = [Observation(a, acc / 10, 0, flops) for a, (flops, acc) in zip(ARCHS, points, strict=False)]
    ref = 12
    cells = sum(any(flops <= x and acc >= y + 1 for flops, acc in points) for x in range(ref) for y in range(10))
    assert hypervolume(obs, ref) == pytest.approx(cells / (ref * 10))
    assert hypervolume(pareto_front(obs), ref) == pytest.approx(hypervolume(obs, ref))  # the front carries it all


def _search_with_sink(tmp_path: Path, budget: int = 16) -> tuple[list[dict], list[Observation]]:
    rs = load_space(SPACE)
    sink = JsonlSink(tmp_path / "m.jsonl")
    res = run_search(rs, "evolution", TableEvaluator(rs, seed=0), CostModel(rs), Limits(), budget, seed=1,
                     progress=False, warn=lambda m: None, batch=2, metrics=sink)  # fmt: skip
    sink.close()
    return [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()], res.history


def test_search_logs_best_so_far_and_the_front_of_what_it_evaluated(tmp_path):
    recs, history = _search_with_sink(tmp_path)
    scalars = [r for r in recs if r["prefix"] == "search"]
    assert [r["step"] for r in scalars] == list(range(1, len(history) + 1))
    ref = CostModel(load_space(SPACE)).extremes()["flops_max"]
    for k, r in enumerate(scalars, 1):
        seen = history[:k]
        assert r["accuracy"] == history[k - 1].accuracy and r["flops"] == history[k - 1].flops
        assert r["best_accuracy"] == max(o.accuracy for o in seen if o.accuracy is not None)
        assert r["front_size"] == len(pareto_front(seen))
        assert r["hypervolume"] == pytest.approx(hypervolume(pareto_front(seen), ref))
    hv = [r["hypervolume"] for r in scalars]
    assert all(b >= a for a, b in itertools.pairwise(hv)) and hv[-1] > 0
    text = [r for r in recs if r["prefix"] == "search/front"]
    assert len(text) == 1 and text[0]["text"].count("\n") == 1 + len(pareto_front(history))


def test_missing_tensorboard_is_a_one_line_error_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(SpaceError, match="trionet-dsl\\[tensorboard\\]"):
        require_tensorboard()
    r = runner.invoke(app, ["search", str(SPACE), "--evaluator", "table", "--out", str(tmp_path / "b.arch"),
                            "--tensorboard", str(tmp_path / "tb")])  # fmt: skip
    assert r.exit_code == 2 and "pip install 'trionet-dsl[tensorboard]'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "b.history.jsonl").exists() and not (tmp_path / "tb").exists()
    r = runner.invoke(app, ["train", str(TINY), "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")])
    assert r.exit_code == 2 and "trionet-dsl[tensorboard]" in r.output and not (tmp_path / "run").exists()


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_search_tensorboard_event_file_reads_back(tmp_path):
    pytest.importorskip("tensorboard")
    out = search_job(SPACE, None, tmp_path / "b.arch", evaluator="table", budget=10, seed=2, batch=2,
                     progress=False, tensorboard=tmp_path / "tb")  # fmt: skip
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    tags = _scalars(tmp_path / "tb")
    accs = [json.loads(line)["accuracy"] for line in (tmp_path / "b.history.jsonl").read_text().splitlines()]
    best = [(k, max(accs[:k])) for k in range(1, 11)]
    assert [s for s, _ in tags["search/best_accuracy"]] == [s for s, _ in best]
    assert [v for _, v in tags["search/best_accuracy"]] == pytest.approx([v for _, v in best], abs=1e-6)  # float32
    assert tags["search/best_accuracy"][-1][1] == pytest.approx(out.accuracy, abs=1e-6)
    assert {"search/front_size", "search/hypervolume", "search/flops"} <= set(tags)


def test_train_tensorboard_logs_epoch_and_step_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from trionet_dsl.app.datasets import load_dataset
    from trionet_dsl.train.config import TrainConfig
    from trionet_dsl.train.loop import train

    rng = np.random.default_rng(0)
    y = np.arange(48) % 3
    x = (rng.integers(0, 120, size=(48, 16, 16, 3)) + 60 * y[:, None, None, None]).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    rs = load_space(TINY)
    data = load_dataset(str(tmp_path / "d.npz"), rs, 0.25, 0)
    cfg = TrainConfig(epochs=2, batch_size=12, lr=0.1, seed=0)
    hist = train(
        rs, data, cfg, tmp_path / "run", progress=False, device="cpu", tensorboard=tmp_path / "tb", log_every=1
    )
    tags = _scalars(tmp_path / "tb")
    spe = len(data.train_x) // 12
    assert [s for s, _ in tags["epoch/val_acc"]] == [spe, 2 * spe]
    assert [v for _, v in tags["epoch/val_acc"]] == pytest.approx([m.val_acc for m in hist], abs=1e-6)
    assert [v for _, v in tags["epoch/train_loss"]] == pytest.approx([m.train_loss for m in hist], rel=1e-6)
    # every step: the cosine schedule's learning rate after it, and the epoch's running loss
    total = 2 * spe
    lrs = [0.1 * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(1, total + 1)]
    assert [s for s, _ in tags["train/lr"]] == list(range(1, total + 1))
    assert [v for _, v in tags["train/lr"]] == pytest.approx(lrs, abs=1e-6)
    assert tags["train/loss"][spe - 1][1] == pytest.approx(hist[0].train_loss, rel=1e-6)  # end of epoch 1
    assert {"train/accuracy", "train/images_per_s", "epoch/images_per_s", "epoch/lr"} <= set(tags)

"""``trionet rank``: the statistics against scipy, the FLOPs-stratified picker, and a tiny end-to-end run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from trionet_dsl import load
from trionet_dsl.app.cli import app
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.app.ranking import (
    bootstrap_difference,
    bootstrap_interval,
    kendall_tau_b,
    noise_ceiling,
    operator_mix,
    pick_archs,
    rank_job,
    rank_statistics,
    spearman_rho,
    top_k_overlap,
)
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.space.cost import CostModel
from trionet_dsl.train import TrainConfig, train

HERE = Path(__file__).resolve().parents[1]  # tests/
TINY = HERE / "data" / "tiny.space"
runner = CliRunner()


# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("seed", range(6))
def test_tau_and_rho_match_scipy_on_random_and_tied_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 40))
    for x, y in (
        (rng.normal(size=n), rng.normal(size=n)),  # no ties
        (rng.integers(0, 4, n).astype(float), rng.integers(0, 3, n).astype(float)),  # many ties
        (np.round(rng.normal(size=n), 1), rng.normal(size=n)),  # ties on one side only
    ):
        y = y + 0.5 * x  # correlated, so the values are not all near 0
        assert kendall_tau_b(x, y) == pytest.approx(sps.kendalltau(x, y, variant="b").statistic, abs=1e-12)
        assert spearman_rho(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)


def test_statistics_edge_cases():
    assert kendall_tau_b([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman_rho([1, 2, 3], [5, 5, 5]))
    assert top_k_overlap([4, 3, 2, 1], [4, 3, 2, 1], 2) == 1.0
    assert top_k_overlap([4, 3, 2, 1], [1, 2, 3, 4], 2) == 0.0
    assert top_k_overlap([4, 3, 2, 1], [4, 1, 3, 2], 2) == 0.5
    assert noise_ceiling([[1, 2, 3]]) is None
    assert noise_ceiling([[1, 2, 3], [1, 2, 3], [3, 2, 1]]) == pytest.approx((1 - 1 - 1) / 3)


def test_bootstrap_interval_contains_the_estimate_and_is_seeded():
    rng = np.random.default_rng(3)
    x = rng.normal(size=20)
    y = x + 0.7 * rng.normal(size=20)
    point = kendall_tau_b(x, y)
    lo, hi = bootstrap_interval(kendall_tau_b, x, y, resamples=500, seed=1)
    assert lo <= point <= hi and hi - lo > 0.05
    assert bootstrap_interval(kendall_tau_b, x, y, resamples=500, seed=1) == (lo, hi)
    assert bootstrap_interval(kendall_tau_b, x, y, resamples=500, seed=2) != (lo, hi)
    st = rank_statistics(x, y, resamples=300, seed=0)
    assert st["k"] == 5
    for name in ("kendall_tau", "spearman_rho", "top_k_overlap"):
        a, b = st[name]["ci95"]
        assert a <= st[name]["value"] <= b, name


def test_paired_bootstrap_difference_matches_a_loop_and_is_narrower_than_either_interval():
    rng = np.random.default_rng(5)
    y = rng.normal(size=24)
    a = y + 0.6 * rng.normal(size=24)
    b = a + 0.3 * rng.normal(size=24)  # a slightly noisier copy of a: the two measures mostly agree
    d = bootstrap_difference(kendall_tau_b, a, b, y, resamples=400, seed=7)
    assert d["value"] == pytest.approx(kendall_tau_b(a, y) - kendall_tau_b(b, y))
    # an independent loop over the same resamples
    r = np.random.default_rng(7)
    ref = []
    for _ in range(400):
        i = r.integers(0, 24, 24)
        ref.append(kendall_tau_b(a[i], y[i]) - kendall_tau_b(b[i], y[i]))
    assert d["ci95"] == pytest.approx(list(np.quantile(ref, [0.025, 0.975])))
    lo_a, hi_a = bootstrap_interval(kendall_tau_b, a, y, resamples=400, seed=7)
    assert d["ci95"][1] - d["ci95"][0] < hi_a - lo_a
    assert bootstrap_difference(kendall_tau_b, a, a, y, resamples=50)["ci95"] == [0.0, 0.0]


# ----------------------------------------------------------------------------- picker


def test_picker_spans_the_flops_range_and_includes_single_operator_archs(small_space):
    picked = pick_archs(small_space, 12, seed=0)
    assert len(picked) == 12 and len({p.text for p in picked}) == 12
    assert [p.mix for p in picked[:3]] == ["all-conv", "all-local", "all-axial"]
    assert all(p.why.startswith("FLOPs bin") for p in picked[3:])
    ext = CostModel(small_space).extremes()
    mixed = sorted(p.flops for p in picked[3:])
    span = ext["flops_max"] - ext["flops_min"]
    assert mixed[0] < ext["flops_min"] + 0.25 * span and mixed[-1] > ext["flops_max"] - 0.25 * span
    assert [p.text for p in pick_archs(small_space, 12, seed=0)] == [p.text for p in picked]  # seeded
    assert [p.text for p in pick_archs(small_space, 12, seed=1)] != [p.text for p in picked]
    assert {operator_mix(p.arch) for p in picked} >= {"all-conv", "all-local", "all-axial", "mixed"}


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def supernet(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny supernet (1 epoch) on a learnable 3-class .npz: bright band position decides the class."""
    rng = np.random.default_rng(0)
    n = 90
    y = np.arange(n) % 3
    x = rng.integers(0, 60, size=(n, 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * c : 4 * c + 4, :, :] += 150
    root = tmp_path_factory.mktemp("rankdata")
    npz = root / "blobs.npz"
    np.savez(npz, x=x, y=y)
    space = load(TINY)
    train(
        space,
        load_dataset(str(npz), space, 0.2, seed=0),
        TrainConfig(epochs=1, batch_size=16),
        root / "run",
        progress=False,
    )
    return npz, root / "run" / "supernet.pt"


def test_rank_end_to_end_writes_json_and_png_and_resumes(supernet, tmp_path, monkeypatch):
    _, ckpt = supernet
    out = tmp_path / "rank"
    res = rank_job(TINY, ckpt, out, archs=4, epochs=1, repeats=2, batch_size=16, resamples=200, progress=False)
    rep = json.loads((out / "rank.json").read_text())
    assert (out / "rank.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.trained == 8 and len(rep["archs"]) == 4
    assert {a["operators"] for a in rep["archs"][:3]} == {"all-conv", "all-local", "all-axial"}
    for a in rep["archs"]:
        assert a["text"].startswith("arch ") or "arch " in a["text"]
        assert 0 <= a["oneshot_acc"] <= 1 and len(a["standalone_runs"]) == 2 and a["flops"] > 0
    assert rep["statistics"]["k"] == 1
    assert set(rep["statistics"]) >= {"kendall_tau", "spearman_rho", "top_k_overlap"}
    assert rep["noise_ceiling"]["seed_to_seed_tau"] is not None
    assert len((out / "results.jsonl").read_text().splitlines()) == 8

    def boom(*a, **k):
        raise AssertionError("a finished training ran again")

    monkeypatch.setattr("trionet_dsl.train.loop.train", boom)
    again = rank_job(
        TINY, ckpt, out, archs=4, epochs=1, repeats=2, batch_size=16, resamples=200, progress=False, resume=True
    )
    assert again.trained == 0
    assert json.loads((out / "rank.json").read_text())["archs"] == rep["archs"]

    with pytest.raises(SpaceError, match="already holds a ranking run"):
        rank_job(TINY, ckpt, out, archs=4, epochs=1, repeats=2, batch_size=16, progress=False)
    with pytest.raises(SpaceError, match="different settings"):
        rank_job(TINY, ckpt, out, archs=4, epochs=2, repeats=2, batch_size=16, progress=False, resume=True)


def test_rank_cli_json_overwrite_and_refusals(supernet, tmp_path, monkeypatch):
    """The CLI's wiring; real stand-alone training is the test above, here a stand-in keeps it fast."""
    from trionet_dsl.train.loop import EpochMetrics

    def fake_train(target, data, cfg, out_dir, **_):
        acc = len(target.arch.blocks[0].op.kind) / 10 + cfg.seed / 100  # differs by operator
        return [EpochMetrics(1, 1.0, 0.5, acc, 100.0, 0.01)]

    monkeypatch.setattr("trionet_dsl.train.loop.train", fake_train)
    _, ckpt = supernet
    out = tmp_path / "r"
    args = ["rank", str(TINY), "--checkpoint", str(ckpt), "--archs", "4", "--epochs", "1", "--out", str(out)]
    r = runner.invoke(app, [*args, "--batch-size", "16", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert Path(summary["rank_json"]).is_file() and Path(summary["rank_png"]).is_file()
    assert summary["noise_ceiling"]["seed_to_seed_tau"] is None  # one repeat: no ceiling
    r = runner.invoke(app, [*args, "--batch-size", "16"])
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, [*args, "--batch-size", "16", "--overwrite", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "Kendall" in r.stdout and "rank.png" in r.stdout
    for bad, msg in ((["--archs", "2"], "at least 3"), (["--epochs", "0"], "at least one epoch")):
        r = runner.invoke(app, [*args[:-1], str(tmp_path / "x"), *bad])
        assert r.exit_code == 2 and msg in r.output, r.output
    other = tmp_path / "other.space"
    other.write_text(TINY.read_text().replace("classes 3", "classes 4"))
    r = runner.invoke(app, ["rank", str(other), "--checkpoint", str(ckpt), "--out", str(tmp_path / "y")])
    assert r.exit_code == 2, r.output


def test_rank_ctrl_c_exits_130_saying_what_is_saved(supernet, tmp_path, monkeypatch):
    from trionet_dsl.train.loop import EpochMetrics

    calls = []

    def interrupted_train(target, data, cfg, out_dir, **_):
        calls.append(out_dir)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [EpochMetrics(1, 1.0, 0.5, 0.5 + len(calls) / 10, 100.0, 0.01)]

    monkeypatch.setattr("trionet_dsl.train.loop.train", interrupted_train)
    _, ckpt = supernet
    out = tmp_path / "r"
    args = ["rank", str(TINY), "--checkpoint", str(ckpt), "--archs", "4", "--epochs", "1", "--out", str(out)]
    r = runner.invoke(app, [*args, "--batch-size", "16", "--no-progress"])
    assert r.exit_code == 130 and "2 stand-alone training(s) are saved" in r.output, r.output
    r = runner.invoke(app, [*args, "--batch-size", "16", "--no-progress", "--resume", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["trained_now"] == 2, r.output


def test_search_measures_exactly_what_rank_validates(supernet, tmp_path, monkeypatch):
    """Issue 11 item 5: the one-shot accuracy `trionet search` ranks by is the one `trionet rank`
    reports for the same arch (same checkpoint split, same BN batches), and the defaults agree."""
    import inspect

    from trionet_dsl.app import cli
    from trionet_dsl.app.searching import _evaluator
    from trionet_dsl.lang.emit import emit_arch
    from trionet_dsl.train.config import ONE_SHOT_BN_BATCHES
    from trionet_dsl.train.loop import EpochMetrics

    monkeypatch.setattr("trionet_dsl.train.loop.train", lambda *a, **k: [EpochMetrics(1, 1.0, 0.5, 0.5, 100.0, 0.01)])
    _, ckpt = supernet
    res = rank_job(TINY, ckpt, tmp_path / "r", archs=5, epochs=1, batch_size=16, resamples=10, progress=False)
    rs = load(TINY)
    evaluate, _, _ = _evaluator("supernet", rs, ckpt, ONE_SHOT_BN_BATCHES, None, None, None, False)
    picked = pick_archs(rs, 5, 0)
    assert [a["text"] for a in res.report["archs"]] == [emit_arch(p.arch) for p in picked]
    assert [evaluate(p.arch)["accuracy"] for p in picked] == [a["oneshot_acc"] for a in res.report["archs"]]
    for cmd in (cli.search_cmd, cli.rank_cmd):
        assert inspect.signature(cmd).parameters["bn_batches"].default.default == ONE_SHOT_BN_BATCHES
    assert inspect.signature(rank_job).parameters["bn_batches"].default == ONE_SHOT_BN_BATCHES

"""Training, bit-exact resume, checkpoints, search with the supernet evaluator, and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from trionet_dsl import load, load_arch
from trionet_dsl.app.cli import app
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.app.export import export_job
from trionet_dsl.app.searching import search_job
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.train import TrainConfig, train
from trionet_dsl.train.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parents[1]  # tests/
TINY = HERE / "data" / "tiny.space"
runner = CliRunner()


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    """A learnable 3-class set: bright blob position decides the class."""
    rng = np.random.default_rng(0)
    n = 90
    y = np.arange(n) % 3
    x = rng.integers(0, 60, size=(n, 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * c : 4 * c + 4, :, :] += 150
    p = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(p, x=x, y=y)
    return p


@pytest.fixture(scope="module")
def trained(npz, tmp_path_factory):
    space = load(TINY)
    data = load_dataset(str(npz), space, 0.2, seed=0)
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=0)
    hist = train(space, data, cfg, out, progress=False)
    return space, data, cfg, out, hist


def test_training_writes_checkpoint_and_metrics(trained):
    _, _, _, out, hist = trained
    assert len(hist) == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]
    ck = load_checkpoint(out / "supernet.pt")
    assert ck["epoch"] == 2 and ck["kind"] == "supernet" and ck["config"]["sampling"] == "hierarchical"


def test_resume_is_bit_exact(trained, tmp_path):
    space, data, cfg, out, _ = trained
    with pytest.raises(KeyboardInterrupt):
        train(space, data, cfg, tmp_path, progress=False, stop_after_epoch=1)
    assert load_checkpoint(tmp_path / "supernet.pt")["epoch"] == 1
    train(space, data, cfg, tmp_path, resume=True, progress=False)
    a = load_checkpoint(out / "supernet.pt")["model"]
    b = load_checkpoint(tmp_path / "supernet.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_with_other_settings_is_refused(trained, tmp_path):
    space, data, cfg, out, _ = trained
    with pytest.raises(SpaceError, match="different settings"):
        train(space, data, cfg.model_copy(update={"lr": 0.5}), out, resume=True, progress=False)
    with pytest.raises(SpaceError, match="nothing to resume"):
        train(space, data, cfg, tmp_path / "empty", resume=True, progress=False)


def test_corrupted_checkpoint_is_a_clear_error(trained, tmp_path):
    bad = tmp_path / "supernet.pt"
    bad.write_bytes((trained[3] / "supernet.pt").read_bytes()[:500])
    with pytest.raises(SpaceError, match="corrupted"):
        load_checkpoint(bad)
    r = runner.invoke(
        app, ["export", str(HERE.parent / "spaces" / "archs" / "resnet50.arch"), "--checkpoint", str(bad)]
    )
    assert r.exit_code == 2 and "corrupted" in r.output and "Traceback" not in r.output


def test_search_writes_a_compilable_arch_and_resumes(trained, npz, tmp_path):
    space, _, _, out, _ = trained
    res = search_job(
        TINY,
        out / "supernet.pt",
        tmp_path / "best.arch",
        data=str(npz),
        strategy="evolution",
        budget=6,
        seed=1,
        progress=False,
        bn_batches=2,
        strategy_options={"population": 3},
    )
    text = (tmp_path / "best.arch").read_text()
    assert text.startswith("# searched by trionet-dsl")
    la = load_arch(tmp_path / "best.arch", space)
    assert la.arch.blocks == res.best.arch.blocks
    hist = tmp_path / "best.history.jsonl"
    assert len(hist.read_text().splitlines()) == 6
    again = search_job(
        TINY,
        out / "supernet.pt",
        tmp_path / "again.arch",
        data=str(npz),
        strategy="evolution",
        budget=6,
        seed=1,
        progress=False,
        bn_batches=2,
        history=hist,
        resume=True,
        strategy_options={"population": 3},
    )
    assert again.best.arch.blocks == res.best.arch.blocks and again.accuracy == res.accuracy
    r = runner.invoke(app, ["compile", str(tmp_path / "best.arch"), "--space", str(TINY)])
    assert r.exit_code == 0, r.output
    # diff the searched arch against another evaluated one: costs from the cost model, accuracies from the history
    import json

    from trionet_dsl.search.base import arch_key

    recs = [json.loads(line) for line in hist.read_text().splitlines()]
    best_key = arch_key(res.best.arch)
    other = next(r for r in recs if r["arch_key"] != best_key)
    lines = []
    for item in other["arch_key"].split(";"):  # "s1.0=local(span=3)/8/2" -> "s1.0 local(span=3) width 8 heads 2"
        block, rest = item.split("=", 1)
        op, width, heads = rest.rsplit("/", 2)
        lines.append(f"  {block} {op} width {width}" + (f" heads {heads}" if heads != "0" else ""))
    (tmp_path / "other.arch").write_text("arch other of tiny {\n" + "\n".join(lines) + "\n}\n")
    r = runner.invoke(
        app,
        [
            "diff",
            str(tmp_path / "best.arch"),
            str(tmp_path / "other.arch"),
            "--space",
            str(TINY),
            "--history",
            str(hist),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["costs"]["params"] == {"a": res.params, "b": other["params"]}
    assert rep["costs"]["flops"]["b"] == other["flops"]
    assert rep["costs"]["accuracy"]["a"] == res.accuracy
    assert rep["costs"]["accuracy"]["b"] == max(x["accuracy"] for x in recs if x["arch_key"] == other["arch_key"])
    assert rep["n_changed"] >= 1


@pytest.mark.parametrize("fmt", ["pt", "torchscript", "onnx"])
def test_export_reloads_with_same_outputs(trained, tmp_path, fmt):
    space, _, _, out, _ = trained
    arch = tmp_path / "a.arch"
    arch.write_text("arch a of tiny {\n  s1.0 local(span=3) width 8 heads 2\n  s2.0 axial width 8 heads 1\n}\n")
    res = export_job(arch, tmp_path / f"m.{fmt}", out / "supernet.pt", fmt=fmt, space=TINY)
    assert res.max_abs_diff < 1e-4
    from trionet_dsl.space.cost import arch_cost

    assert res.params == arch_cost(space, load_arch(arch, space).arch).params


def test_cli_train_search_export(npz, tmp_path):
    run = tmp_path / "run"
    r = runner.invoke(
        app,
        [
            "train",
            str(TINY),
            "--data",
            str(npz),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out",
            str(run),
            "--no-progress",
            "--seed",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "search",
            str(TINY),
            "--checkpoint",
            str(run / "supernet.pt"),
            "--data",
            str(npz),
            "--budget",
            "4",
            "--strategy",
            "random",
            "--max-flops",
            "2M",
            "--out",
            str(tmp_path / "b.arch"),
            "--no-progress",
            "--multi-objective",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b.front").is_dir()
    r = runner.invoke(
        app,
        [
            "export",
            str(tmp_path / "b.arch"),
            "--checkpoint",
            str(run / "supernet.pt"),
            "--format",
            "onnx",
            "--space",
            str(TINY),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b.onnx").exists()
    r = runner.invoke(app, ["train", str(TINY), "--data", "digts", "--out", str(run)])
    assert r.exit_code == 2 and "did you mean 'digits'" in r.output
    r = runner.invoke(
        app, ["search", str(TINY), "--checkpoint", str(run / "supernet.pt"), "--max-flops", "1K", "--data", str(npz)]
    )
    assert r.exit_code == 2 and "below the smallest" in r.output


def test_cli_train_with_a_separate_validation_set(npz, tmp_path):
    import json

    run = tmp_path / "run"
    r = runner.invoke(
        app,
        [
            "train",
            str(TINY),
            "--data",
            str(npz),
            "--val",
            str(npz),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out",
            str(run),
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    meta = torch.load(run / "supernet.pt", weights_only=True)["data"]
    assert meta["train"] == 90 and meta["val"] == 90  # no split: every image trains, the --val set validates
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 1
    r = runner.invoke(
        app, ["train", str(TINY), "--data", str(npz), "--val", str(tmp_path / "nope.npz"), "--out", str(run)]
    )
    assert r.exit_code == 2 and "nope.npz" in r.output


def test_ctrl_c_says_what_was_saved(npz, tmp_path, monkeypatch):
    import trionet_dsl.app.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trionet_dsl.app.training, "train_job", interrupted)
    r = runner.invoke(app, ["train", str(TINY), "--data", str(npz), "--out", str(tmp_path / "run")])
    assert r.exit_code == 130 and "Traceback" not in r.output
    assert "nothing was saved" in r.output and "--resume" not in r.output  # no epoch finished: no promise


def test_ctrl_c_after_an_epoch_points_to_resume(trained, npz, tmp_path, monkeypatch):
    import shutil

    import trionet_dsl.app.training

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained[3] / "supernet.pt", run / "supernet.pt")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trionet_dsl.app.training, "train_job", interrupted)
    r = runner.invoke(app, ["train", str(TINY), "--data", str(npz), "--out", str(run)])
    assert r.exit_code == 130
    assert "epoch 2 is saved" in r.output and "--resume" in r.output


def test_search_with_and_without_the_prefix_cache_is_the_same_search(trained, npz, tmp_path, monkeypatch):
    """The cache changes speed, never the search: same history, same best; the evaluator's data
    (a streamed bundle's DataLoader workers) is closed when the search ends."""
    from trionet_dsl.train.data import DataBundle

    closed: list[int] = []
    real_close = DataBundle.close
    monkeypatch.setattr(DataBundle, "close", lambda self: (closed.append(1), real_close(self))[1])
    _, _, _, out, _ = trained
    runs = {}
    for mb in (0, 64):
        runs[mb] = search_job(
            TINY,
            out / "supernet.pt",
            tmp_path / f"c{mb}.arch",
            data=str(npz),
            budget=8,
            seed=2,
            progress=False,
            bn_batches=2,
            strategy_options={"population": 3},
            cache_mb=mb,
        )
    assert runs[0].prefix_reuse is None and runs[64].prefix_reuse is not None and runs[64].prefix_reuse > 0
    hist = [(tmp_path / f"c{mb}.history.jsonl").read_text().splitlines() for mb in (0, 64)]
    strip = [[{k: v for k, v in json.loads(line).items() if k not in ("time", "seconds")} for line in h] for h in hist]
    assert strip[0] == strip[1]
    assert runs[0].best.arch.blocks == runs[64].best.arch.blocks and runs[0].accuracy == runs[64].accuracy
    assert len(closed) == 2
    with pytest.raises(SpaceError, match="--cache-mb"):
        search_job(TINY, out / "supernet.pt", tmp_path / "x.arch", data=str(npz), budget=2, progress=False, cache_mb=-1)

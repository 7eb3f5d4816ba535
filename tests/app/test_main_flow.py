"""The main job as a user runs it: train -> search -> export -> use the exported file.

The exported model must be the model search measured: same validation accuracy, from
raw pixels, in every format; every misuse on the way is one clean error (exit 2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from trionet_dsl.app.cli import app
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.app.export import export_job
from trionet_dsl.app.searching import search_job
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.space.loader import load_space

HERE = Path(__file__).resolve().parents[1]  # tests/
TINY = HERE / "data" / "tiny.space"
runner = CliRunner()

DIGITS_SPACE = """\
space dig {
  input 1x16x16
  classes 10
  stem {
    conv 3x3 8 stride 2
  }
  block bottleneck expansion 2 {
    op conv(kernel=3) | local(span=3) | axial
    width 0.5x | 1.0x
    heads 1 | 2
  }
  stage s1 blocks 1 width 8 stride 1
  stage s2 blocks 1 width 16 stride 2
}
"""


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """train (2 epochs) -> search (budget 5) on real digits, through the CLI."""
    d = tmp_path_factory.mktemp("flow")
    space = d / "dig.space"
    space.write_text(DIGITS_SPACE)
    r = runner.invoke(
        app,
        [
            "train",
            str(space),
            "--data",
            "digits",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--lr",
            "0.1",
            "--out",
            str(d / "run"),
            "--no-progress",
            "--threads",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "search",
            str(space),
            "--checkpoint",
            str(d / "run" / "supernet.pt"),
            "--budget",
            "5",
            "--strategy",
            "random",
            "--out",
            str(d / "best.arch"),
            "--no-progress",
            "--seed",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "evaluated on digits (val-fraction 0.2, split seed 0): 359 validation images" in r.output
    return d, space


def _history_accuracy(d: Path) -> float:
    from trionet_dsl.search.base import arch_key
    from trionet_dsl.space.loader import load_arch

    best = load_arch(d / "best.arch", d / "dig.space").arch
    recs = [json.loads(line) for line in (d / "best.history.jsonl").read_text().splitlines()]
    return next(r["accuracy"] for r in recs if r["arch_key"] == arch_key(best))


def test_exported_onnx_from_raw_pixels_scores_what_search_reported(flow):
    import onnxruntime as ort

    d, space = flow
    r = runner.invoke(
        app,
        [
            "export",
            str(d / "best.arch"),
            "--checkpoint",
            str(d / "run" / "supernet.pt"),
            "--out",
            str(d / "best.onnx"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    searched = _history_accuracy(d)
    header = float(re.search(r"accuracy (\d\.\d{4})", (d / "best.arch").read_text()).group(1))
    assert abs(rep["accuracy"] - searched) < 1e-6 and abs(rep["metadata"]["val_accuracy"] - searched) < 1e-6
    assert round(searched, 4) == header
    # independent of the library's runner: onnxruntime on raw 0-255 images, nothing else
    bundle = load_dataset("digits", load_space(space), 0.2, seed=0)
    sess = ort.InferenceSession(str(d / "best.onnx"), providers=["CPUExecutionProvider"])
    raw = (bundle.val_raw * 255).numpy().astype(np.float32)
    pred = sess.run(None, {"input": raw})[0].argmax(1)
    assert abs((pred == bundle.val_y.numpy()).mean() - searched) < 1e-6
    assert rep["metadata"]["mean"] == pytest.approx(bundle.mean) and rep["metadata"]["classes"] == bundle.class_names


@pytest.mark.parametrize("fmt", ["pt", "torchscript"])
def test_every_format_scores_the_same_and_carries_metadata(flow, fmt):
    from trionet_dsl.app.export import load_exported, read_metadata

    d, space = flow
    res = export_job(
        d / "best.arch", d / f"m_{fmt}.{'ts' if fmt == 'torchscript' else 'pt'}", d / "run" / "supernet.pt", fmt=fmt
    )
    assert abs(res.accuracy - _history_accuracy(d)) < 1e-6
    meta = read_metadata(res.path)
    assert meta["height"] == 16 and meta["channels"] == 1 and meta["bn"].startswith("recalibrated on 8")
    if fmt == "pt":  # the pipeline's own (normalised) path predicts what the file predicts from raw pixels
        bundle = load_dataset("digits", load_space(space), 0.2, seed=0)
        model = load_exported(res.path)
        with torch.no_grad():
            assert torch.equal(model(bundle.val_raw * 255).argmax(1), model.net(bundle.val_x).argmax(1))


def test_no_recalibrate_keeps_the_supernet_statistics(flow):
    d, _ = flow
    res = export_job(d / "best.arch", d / "raw.pt", d / "run" / "supernet.pt", recalibrate=False)
    assert res.metadata["bn"] == "supernet running statistics" and res.accuracy is not None


def test_checkpoint_records_its_data_and_search_refuses_other_data(flow, tmp_path):
    d, space = flow
    meta = torch.load(d / "run" / "supernet.pt", weights_only=True)["data"]
    assert meta["source"] == "digits" and meta["val_fraction"] == 0.2 and meta["seed"] == 0
    ck = str(d / "run" / "supernet.pt")
    for extra, opt in ((["--val-fraction", "0.3"], "--val-fraction"), (["--data", "mnist5k"], "--data")):
        r = runner.invoke(
            app,
            [
                "search",
                str(space),
                "--checkpoint",
                ck,
                "--budget",
                "1",
                "--out",
                str(tmp_path / "x.arch"),
                "--no-progress",
                *extra,
            ],
        )
        assert r.exit_code == 2 and f"{opt}" in r.output and "--force" in r.output, r.output
        r = runner.invoke(
            app, ["export", str(d / "best.arch"), "--checkpoint", ck, "--out", str(tmp_path / "x.pt"), *extra]
        )
        assert r.exit_code == 2 and "differs from the checkpoint's training data" in r.output
    r = runner.invoke(
        app,
        [
            "search",
            str(space),
            "--checkpoint",
            ck,
            "--budget",
            "1",
            "--out",
            str(tmp_path / "f.arch"),
            "--no-progress",
            "--val-fraction",
            "0.3",
            "--force",
        ],
    )
    assert r.exit_code == 0 and "val-fraction 0.3" in r.output


def test_best_epoch_checkpoint_is_kept(flow):
    d, _ = flow
    from trionet_dsl.train.checkpoint import load_checkpoint

    last, best = load_checkpoint(d / "run" / "supernet.pt"), load_checkpoint(d / "run" / "best.pt")
    accs = [m["val_acc"] for m in last["metrics"]]
    assert best["epoch"] == max(range(1, len(accs) + 1), key=lambda e: (accs[e - 1], e))


def test_existing_history_needs_resume_or_overwrite(flow, tmp_path):
    d, space = flow
    args = [
        "search",
        str(space),
        "--checkpoint",
        str(d / "run" / "supernet.pt"),
        "--budget",
        "1",
        "--strategy",
        "random",
        "--out",
        str(d / "best.arch"),
        "--no-progress",
        "--seed",
        "1",
    ]
    before = (d / "best.history.jsonl").read_text()
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "already exists" in r.output and "--overwrite" in r.output
    assert (d / "best.history.jsonl").read_text() == before  # nothing truncated
    elsewhere = [*args[:-5], "--out", str(tmp_path / "o.arch"), "--history", str(tmp_path / "h.jsonl"), "--no-progress"]
    r = runner.invoke(app, elsewhere)
    assert r.exit_code == 0
    r = runner.invoke(app, [*elsewhere, "--overwrite"])
    assert r.exit_code == 0 and len((tmp_path / "h.jsonl").read_text().splitlines()) == 1


def test_small_budget_warns_that_the_strategy_is_random(flow, tmp_path):
    d, space = flow
    r = runner.invoke(
        app,
        [
            "search",
            str(space),
            "--checkpoint",
            str(d / "run" / "supernet.pt"),
            "--budget",
            "3",
            "--strategy",
            "evolution",
            "--out",
            str(tmp_path / "e.arch"),
            "--no-progress",
        ],
    )
    assert r.exit_code == 0
    assert "warning" in r.output and "warm-up" in r.output and "population" in r.output
    r = runner.invoke(
        app,
        [
            "search",
            str(space),
            "--checkpoint",
            str(d / "run" / "supernet.pt"),
            "--budget",
            "3",
            "--strategy",
            "random",
            "--out",
            str(tmp_path / "r.arch"),
            "--no-progress",
        ],
    )
    assert "warning" not in r.output


def test_ties_are_broken_by_cost_then_text_not_by_order():
    from trionet_dsl.lang.ir import Arch, ArchBlock, Op
    from trionet_dsl.search.base import Observation
    from trionet_dsl.search.driver import select_best

    def obs(w: int, acc: float, params: int, flops: int) -> Observation:
        a = Arch(name="a", space="s", blocks=(ArchBlock(stage="s1", index=0, op=Op(kind="conv", kernel=3), width=w),))
        return Observation(a, acc, params, flops)

    xs = [obs(8, 0.9, 10, 100), obs(16, 0.9, 10, 90), obs(24, 0.9, 9, 90), obs(32, 0.9, 9, 90), obs(4, 0.8, 1, 1)]
    for order in (xs, xs[::-1], xs[2:] + xs[:2]):
        best = select_best(order)
        assert best.arch.blocks[0].width == 24  # fewest FLOPs, then params, then text ("...=conv(kernel=3)/24" < "/32")


# ---------------------------------------------------------------- clean errors, one per misuse
def _npz(tmp_path: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "few.npz"
    np.savez(p, x=rng.integers(0, 255, size=(n, 8, 8, 3), dtype=np.uint8), y=np.arange(n) % 3)
    return p


def test_epoch_with_no_step_is_refused_before_training(tmp_path):
    r = runner.invoke(
        app,
        [
            "train",
            str(TINY),
            "--data",
            str(_npz(tmp_path)),
            "--batch-size",
            "64",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
    )
    assert r.exit_code == 2 and "no training step" in r.output and "--batch-size" in r.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("vf", ["0", "1.5", "1"])
def test_val_fraction_outside_0_1_is_one_line(tmp_path, vf):
    r = runner.invoke(
        app, ["train", str(TINY), "--data", str(_npz(tmp_path)), "--val-fraction", vf, "--out", str(tmp_path / "run")]
    )
    assert r.exit_code == 2 and "--val-fraction" in r.output and "Traceback" not in r.output


def test_train_out_is_a_file(tmp_path, monkeypatch):
    import trionet_dsl.app.training

    f = tmp_path / "taken"
    f.write_text("x")
    monkeypatch.setattr(trionet_dsl.app.training, "load_dataset", lambda *a, **k: pytest.fail("loaded data first"))
    r = runner.invoke(app, ["train", str(TINY), "--out", str(f)])
    assert r.exit_code == 2 and "is a file" in r.output


def test_search_and_export_option_errors(flow, tmp_path):
    d, space = flow
    ck = str(d / "run" / "supernet.pt")
    r = runner.invoke(app, ["search", str(space), "--checkpoint", ck, "--budget", "0"])
    assert r.exit_code == 2 and "--budget 0" in r.output and "limit" not in r.output
    r = runner.invoke(app, ["search", str(space), "--checkpoint", ck, "--bn-batches", "0"])
    assert r.exit_code == 2 and "--bn-batches 0" in r.output
    r = runner.invoke(app, ["export", str(d / "best.arch"), "--checkpoint", ck, "--out", str(tmp_path)])
    assert r.exit_code == 2 and "is a folder" in r.output
    r = runner.invoke(
        app, ["export", str(d / "best.arch"), "--checkpoint", ck, "--format", "pt", "--out", str(tmp_path / "x.onnx")]
    )
    assert r.exit_code == 2 and "suffix '.onnx'" in r.output and not (tmp_path / "x.onnx").exists()
    text = tmp_path / "notes.pt"
    text.write_text("just some text\n")
    r = runner.invoke(app, ["export", str(d / "best.arch"), "--checkpoint", str(text), "--out", str(tmp_path / "y.pt")])
    assert r.exit_code == 2 and "not a checkpoint" in r.output and "weights_only" not in r.output


def test_format_follows_the_out_suffix(flow, tmp_path):
    d, _ = flow
    res = export_job(d / "best.arch", tmp_path / "m.onnx", d / "run" / "supernet.pt")
    assert res.format == "onnx" and (tmp_path / "m.onnx").read_bytes()[:1] != b"P"


def test_threads_option_sets_torch_threads(tmp_path):
    before = torch.get_num_threads()
    try:
        with pytest.raises(SpaceError):  # the data is missing: threads are set first, then it fails
            search_job(TINY, tmp_path / "none.pt", tmp_path / "b.arch", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_readme_use_the_exported_model_snippet_runs(tmp_path, monkeypatch):
    """The README's 'Using the exported model' code, run as written on freshly exported files."""
    from trionet_dsl.lang.emit import emit_arch
    from trionet_dsl.space.sampling import uniform_op

    readme = (HERE.parent / "README.md").read_text()
    section = readme[readme.index("## Using the exported model") :]
    code = section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]
    space = load_space(HERE.parent / "spaces" / "trionet_small.space")
    (tmp_path / "a.arch").write_text(emit_arch(uniform_op(space, "conv")))
    for suffix in (".onnx", ".ts", ".pt"):
        export_job(
            tmp_path / "a.arch",
            tmp_path / f"best{suffix}",
            fresh=True,
            space=HERE.parent / "spaces" / "trionet_small.space",
        )
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})


@pytest.mark.parametrize("cmd", ["train", "search"])
def test_huge_seed_is_a_clear_error(tmp_path, cmd):
    args = [cmd, str(TINY), "--seed", str(2**70)]
    args += ["--out", str(tmp_path / "run")] if cmd == "train" else ["--checkpoint", str(tmp_path / "x.pt")]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--seed" in r.output and "Traceback" not in r.output, r.output


def test_train_never_overwrites_a_run_without_asking(tmp_path):
    npz = _npz(tmp_path, n=48)
    args = ["train", str(TINY), "--data", str(npz), "--epochs", "1", "--batch-size", "8", "--no-progress"]
    run = tmp_path / "run"
    assert runner.invoke(app, [*args, "--out", str(run)]).exit_code == 0
    before = (run / "supernet.pt").read_bytes()
    r = runner.invoke(app, [*args, "--out", str(run), "--seed", "5"])
    assert r.exit_code == 2 and "already holds a run" in r.output and "--overwrite" in r.output
    assert (run / "supernet.pt").read_bytes() == before
    assert runner.invoke(app, [*args, "--out", str(run), "--seed", "5", "--overwrite"]).exit_code == 0
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "big"), "--max-memory", "1K"])
    assert r.exit_code == 2 and "memory budget" in r.output, r.output

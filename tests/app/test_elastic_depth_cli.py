"""Elastic depth through the CLI: compile, diff, training the supernet and a shallow arch, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trionet_dsl import load_arch
from trionet_dsl.app.cli import app
from trionet_dsl.space.cost import arch_cost
from trionet_dsl.train.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parents[1]
SPACES = HERE.parent / "spaces"
TINY = HERE / "data" / "tiny_elastic.space"
runner = CliRunner()

SHALLOW = """arch shallow of tiny_elastic {
  s1.0 conv(kernel=3) width 8
  s2 depth 1
  s2.0 local(span=3) width 16 heads 2
}
"""
DEEP = """arch deep of tiny_elastic {
  s1.0 conv(kernel=3) width 8
  s2 depth 3
  s2.0 local(span=3) width 16 heads 2
  s2.1 axial width 8 heads 1
  s2.2 conv(kernel=3) width 16
}
"""


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.integers(0, 60, size=(60, 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * c : 4 * c + 4] += 150
    p = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(p, x=x, y=y)
    return p


def test_compile_prints_the_space_size():
    r = runner.invoke(app, ["compile", str(SPACES / "trionet_small_elastic.space")])
    assert r.exit_code == 0, r.output
    assert "47,241,633,375" in r.output  # (15 + 15^2 + 15^3)^3
    assert "1|2|3" in r.output and "s1.1 (optional)" in r.output
    data = json.loads(runner.invoke(app, ["compile", str(TINY), "--json"]).output)
    per_block = 2 + 2 * 2 * 2  # conv x 2 widths + (local, axial) x 2 widths x 2 heads = 10
    assert data["size"] == per_block * (per_block + per_block**2 + per_block**3)
    assert data["stages"][1]["depths"] == [1, 2, 3] and [b["optional"] for b in data["blocks"]] == [
        False,
        False,
        True,
        True,
    ]


def test_diff_shows_the_depth_change(tmp_path):
    (tmp_path / "a.arch").write_text(SHALLOW)
    (tmp_path / "b.arch").write_text(DEEP)
    args = ["diff", str(tmp_path / "a.arch"), str(tmp_path / "b.arch"), "--space", str(TINY)]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["depths"] == [{"stage": "s2", "a": 1, "b": 3}]
    assert {row["block"]: row["changed"] for row in d["blocks"]} == {
        "s1.0": [],
        "s2.0": [],
        "s2.1": ["added"],
        "s2.2": ["added"],
    }
    assert d["costs"]["params"]["a"] < d["costs"]["params"]["b"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "stage s2 depth 1 -> 3" in r.output


def test_train_supernet_then_a_shallow_arch_then_export(npz, tmp_path):
    run = tmp_path / "run"
    common = ["--data", str(npz), "--epochs", "1", "--batch-size", "16", "--no-progress", "--seed", "1"]
    r = runner.invoke(app, ["train", str(TINY), "--out", str(run), *common])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(run / "supernet.pt")["kind"] == "supernet"
    (tmp_path / "a.arch").write_text(SHALLOW)
    r = runner.invoke(
        app, ["train", str(tmp_path / "a.arch"), "--space", str(TINY), "--out", str(tmp_path / "s"), *common]
    )
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(tmp_path / "s" / "model.pt")
    la = load_arch(tmp_path / "a.arch", TINY)
    # the standalone model holds only the blocks within the depth: s1.0 and s2.0
    assert {k.split(".")[1] for k in ck["model"] if k.startswith("blocks.")} == {"0", "1"}
    trainable = sum(v.numel() for k, v in ck["model"].items() if "running" not in k and "num_batches" not in k)
    assert trainable == arch_cost(la.space, la.arch).params
    r = runner.invoke(
        app,
        [
            "export",
            str(tmp_path / "a.arch"),
            "--checkpoint",
            str(run / "supernet.pt"),
            "--space",
            str(TINY),
            "--out",
            str(tmp_path / "m.pt"),
        ],
    )
    assert r.exit_code == 0, r.output


def test_space_diff_lists_depth_choices():
    r = runner.invoke(
        app, ["diff", str(SPACES / "trionet_small.space"), str(SPACES / "trionet_small_elastic.space"), "--json"]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["header"] == [f"stage {s} depth 2 -> 1|2|3" for s in ("s1", "s2", "s3")]
    assert {row["block"]: row["status"] for row in d["blocks"]}["s1.2"] == "added"
    assert (d["size_a"], d["size_b"]) == (15**6, (15 + 15**2 + 15**3) ** 3)

"""`trionet search` with --batch and the table evaluator: reproducible, JSON, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trionet_dsl.app.cli import app

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "trionet_small.space"
runner = CliRunner()


def _search(tmp_path: Path, name: str, *extra: str):
    args = ["search", str(SPACE), "--evaluator", "table", "--budget", "24", "--seed", "3"]
    return runner.invoke(app, [*args, "--out", str(tmp_path / f"{name}.arch"), "--json", *extra])


@pytest.mark.parametrize("strategy", ["evolution", "tpe"])
def test_batch_search_is_reproducible_from_the_cli(tmp_path, strategy):
    runs = [_search(tmp_path, f"{strategy}{k}", "--strategy", strategy, "--batch", "4") for k in "ab"]
    assert [r.exit_code for r in runs] == [0, 0], runs[0].output
    a, b = (json.loads(r.output) for r in runs)
    assert a["evaluated"] == b["evaluated"] == 24 and a["accuracy"] == b["accuracy"]
    ha, hb = ([json.loads(x)["arch_key"] for x in Path(r["history"]).read_text().splitlines()] for r in (a, b))
    assert ha == hb and len(set(ha)) == 24
    body = [(tmp_path / f"{strategy}{k}.arch").read_text().split("{", 1)[1] for k in "ab"]
    assert body[0] == body[1]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--batch", "0"], "--batch 0"),
        (["--study", "s"], "--study needs --storage"),
        (["--strategy", "random", "--storage", "sqlite:///x.db"], "Optuna strategies"),
    ],
)
def test_bad_search_options_are_one_line_errors(tmp_path, extra, message):
    r = _search(tmp_path, "bad", *extra)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "bad.arch").exists()

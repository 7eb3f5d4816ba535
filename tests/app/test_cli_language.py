"""The language half of the CLI, through typer's CliRunner."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trionet_dsl.app.cli import app
from trionet_dsl.lang.files import atomic_write_text

SPACES = Path(__file__).resolve().parents[2] / "spaces"

runner = CliRunner()


def test_compile_r50_prints_exact_size():
    r = runner.invoke(app, ["compile", str(SPACES / "trionet_r50.space"), "--no-costs"])
    assert r.exit_code == 0, r.output
    assert f"{15**16:,}" in r.output
    assert "s4.2" in r.output


def test_compile_json(tmp_path):
    r = runner.invoke(
        app,
        ["compile", str(SPACES / "trionet_small.space"), "--json", "--no-costs", "--graph", str(tmp_path / "g.dot")],
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["size"] == 15**6 and data["kind"] == "space"
    assert [s["name"] for s in data["stages"]] == ["s1", "s2", "s3"]
    assert data["blocks"][2]["in"] == "32x16x16" and data["blocks"][2]["out"] == "64x8x8"
    assert (tmp_path / "g.dot").read_text().startswith("strict digraph")


def test_misspelt_operator_is_one_located_error(tmp_path):
    src = (SPACES / "trionet_small.space").read_text().replace("| axial", "| axail")
    f = tmp_path / "bad.space"
    f.write_text(src)
    r = runner.invoke(app, ["compile", str(f)])
    assert r.exit_code == 2
    line = next(i for i, text in enumerate(src.splitlines(), 1) if "axail" in text)
    col = src.splitlines()[line - 1].index("axail") + 1
    assert f"bad.space:{line}:{col}: error: unknown operator 'axail'" in r.output
    assert "did you mean 'axial'" in r.output
    assert "Traceback" not in r.output and len(r.output.splitlines()) < 10


def test_missing_file_and_binary_file(tmp_path):
    r = runner.invoke(app, ["compile", str(tmp_path / "nope.space")])
    assert r.exit_code == 2 and "cannot read" in r.output
    f = tmp_path / "bin.space"
    f.write_bytes(b"\xff\xfe\x00garbage")
    r = runner.invoke(app, ["compile", str(f)])
    assert r.exit_code == 2 and "not UTF-8" in r.output


def test_fmt_check_and_rewrite(tmp_path):
    files = [str(p) for p in sorted(SPACES.glob("*.space")) + sorted((SPACES / "archs").glob("*.arch"))]
    r = runner.invoke(app, ["fmt", "--check", *files])
    assert r.exit_code == 0, r.output
    messy = tmp_path / "s.space"
    shutil.copy(SPACES / "trionet_small.space", messy)
    text = messy.read_text().replace(
        "  stage s1 blocks 2 width 16 stride 1", "stage s1   width 16 blocks 2 ; # first stage"
    )
    messy.write_text(text)
    assert runner.invoke(app, ["fmt", "--check", str(messy)]).exit_code == 1
    assert runner.invoke(app, ["fmt", str(messy)]).exit_code == 0
    out = messy.read_text()
    assert "  stage s1 blocks 2 width 16 stride 1  # first stage\n" in out
    assert runner.invoke(app, ["fmt", "--check", str(messy)]).exit_code == 0


def test_diff_archs():
    r = runner.invoke(
        app, ["diff", str(SPACES / "archs" / "resnet50.arch"), str(SPACES / "archs" / "sasa_r50.arch"), "--json"]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["n_changed"] == 16 and d["n_equal"] == 0
    assert d["blocks"][0]["changed"] == ["op", "heads"]


def test_diff_same_arch_and_spaces(tmp_path):
    a = SPACES / "archs" / "axial_r50.arch"
    r = runner.invoke(app, ["diff", str(a), str(a), "--json"])
    assert json.loads(r.output)["n_changed"] == 0
    b = tmp_path / "trionet_r50.space"
    b.write_text((SPACES / "trionet_r50.space").read_text().replace("heads 4 | 8", "heads 8 | 16"))
    r = runner.invoke(app, ["diff", str(SPACES / "trionet_r50.space"), str(b), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    row = d["blocks"][0]
    assert row["status"] == "changed" and row["heads_added"] == {"local(span=7)": [16], "axial": [16]}
    assert row["heads_removed"] == {"local(span=7)": [4], "axial": [4]}


def test_schema():
    r = runner.invoke(app, ["schema", "space"])
    assert r.exit_code == 0
    s = json.loads(r.output)
    assert "stages" in s["properties"]
    assert runner.invoke(app, ["schema", "spcae"]).exit_code == 2


# ------------------------------------------------------------------ file modes and symlinks
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_atomic_write_honours_umask_and_keeps_an_existing_mode(tmp_path, umask_022):
    new = atomic_write_text(tmp_path / "sub" / "new.txt", "x")
    assert stat.S_IMODE(new.stat().st_mode) == 0o644 and new.read_text() == "x"
    os.umask(0o077)
    assert stat.S_IMODE(atomic_write_text(tmp_path / "private.txt", "x").stat().st_mode) == 0o600
    old = tmp_path / "old.txt"
    old.write_text("a")
    old.chmod(0o640)
    atomic_write_text(old, "b")
    assert stat.S_IMODE(old.stat().st_mode) == 0o640 and old.read_text() == "b"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_fmt_keeps_mode_and_writes_through_symlinks(tmp_path, umask_022):
    messy = (
        (SPACES / "trionet_small.space")
        .read_text()
        .replace("  stage s1 blocks 2 width 16 stride 1", "stage s1 width 16 blocks 2")
    )
    target = tmp_path / "real" / "s.space"
    target.parent.mkdir()
    target.write_text(messy)
    target.chmod(0o644)
    link = tmp_path / "link.space"
    link.symlink_to(target)
    r = runner.invoke(app, ["fmt", str(link)])
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == (SPACES / "trionet_small.space").read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    # a group-readable file stays so
    other = tmp_path / "g.space"
    other.write_text(messy)
    other.chmod(0o640)
    assert runner.invoke(app, ["fmt", str(other)]).exit_code == 0
    assert stat.S_IMODE(other.stat().st_mode) == 0o640
    assert runner.invoke(app, ["fmt", "--check", str(other), str(link)]).exit_code == 0


def test_compile_arch_graph_draws_the_arch(tmp_path):
    arch = SPACES / "archs" / "resnet50.arch"
    r = runner.invoke(app, ["compile", str(arch), "--no-costs", "--graph", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "a.json").read_text())
    kinds = [n["kind"] for n in data["nodes"]]
    assert kinds.count("op") == 16 and "choice" not in kinds
    assert {n["op"] for n in data["nodes"] if n["kind"] == "op"} == {"conv(kernel=3)"}
    r = runner.invoke(app, ["compile", str(arch), "--no-costs", "--graph", str(tmp_path / "a.dot")])
    assert r.exit_code == 0, r.output
    dot = (tmp_path / "a.dot").read_text()
    assert "s1.0 conv(kernel=3) w64" in dot and "choices" not in dot and "local" not in dot


def test_weak_inputs_get_located_errors_naming_the_cause(tmp_path):
    empty = tmp_path / "empty.space"
    empty.write_text("")
    r = runner.invoke(app, ["compile", str(empty)])
    assert r.exit_code == 2 and f"{empty}:1:1: error: the file is empty" in r.output
    bad = tmp_path / "bad.space"
    bad.write_text(
        (SPACES / "trionet_small.space")
        .read_text()
        .replace("stage s1 blocks 2 width 16", "stage s1 blocks 2 width -16")
    )
    r = runner.invoke(app, ["compile", str(bad)])
    assert r.exit_code == 2 and "error: negative width -16" in r.output and "Traceback" not in r.output


# ------------------------------------------------------------------ the README's language section
README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_language_example() -> str:
    text = README.read_text()
    section = text[text.index("## The language") :]
    block = section[section.index("```\n") + 4 :]
    return block[: block.index("```\n")]


def test_readme_language_example_is_canonical(tmp_path):
    from trionet_dsl.lang.emit import emit
    from trionet_dsl.lang.parser import parse
    from trionet_dsl.space.loader import compile_space_text

    example = _readme_language_example()
    assert "space trionet_r50 {" in example and "# per-block override" in example
    assert emit(parse(example)) == example
    rs = compile_space_text(example)
    assert len(rs.blocks) == 16 and rs.stem_hw == (56, 56)
    f = tmp_path / "example.space"
    f.write_text(example)
    r = runner.invoke(app, ["fmt", "--check", str(f)])
    assert r.exit_code == 0, r.output


def test_readme_stem_examples_compile():
    from trionet_dsl.space.loader import compile_space_text

    row = next(line for line in README.read_text().splitlines() if line.startswith("| `stem { ... }`"))
    examples = [ex.strip() for ex in row.split("|")[2].replace("`", "").split(",")]
    assert "avgpool 2x2 stride 2" in examples
    for ex in examples:
        rs = compile_space_text(
            f"space t {{ input 3x32x32 classes 10 stem {{ {ex} }} "
            "block bottleneck { op conv } stage s1 blocks 1 width 8 }"
        )
        assert rs.stem_hw == (16, 16), ex

"""fmt refuses a read-only file with a clear message and exit 2; the file is left as it was."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from trionet_dsl.app.cli import app

SMALL = (Path(__file__).resolve().parents[2] / "spaces" / "trionet_small.space").read_text()


def test_fmt_refuses_a_read_only_file(tmp_path):
    f = tmp_path / "s.space"
    messy = SMALL.replace("  stage s1 blocks 2 width 16 stride 1", "stage s1   width 16 blocks 2")
    f.write_text(messy)
    os.chmod(f, 0o444)
    try:
        r = CliRunner().invoke(app, ["fmt", str(f)])
        assert r.exit_code == 2, r.output
        assert "read-only" in r.output and "Traceback" not in r.output
        assert f.read_text() == messy and (f.stat().st_mode & 0o777) == 0o444
        assert os.listdir(tmp_path) == ["s.space"]
        assert CliRunner().invoke(app, ["fmt", "--check", str(f)]).exit_code == 1  # reporting is fine
    finally:
        os.chmod(f, 0o644)


def test_fmt_leaves_a_canonical_read_only_file_alone(tmp_path):
    f = tmp_path / "s.space"
    f.write_text(SMALL)
    assert CliRunner().invoke(app, ["fmt", str(f)]).exit_code == 0
    os.chmod(f, 0o444)
    try:
        r = CliRunner().invoke(app, ["fmt", str(f)])
        assert r.exit_code == 0 and "unchanged" in r.output
    finally:
        os.chmod(f, 0o644)

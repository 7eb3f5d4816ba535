"""The documented maximum works: a 4,096-block space compiles (size and costs), samples and diffs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trionet_dsl.app.cli import app
from trionet_dsl.app.compile_report import report
from trionet_dsl.app.diff_report import diff_report
from trionet_dsl.lang.emit import emit
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.space.counts import count_text, count_value, sci
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.resolve import check_arch
from trionet_dsl.space.sampling import sample

SMALL = (Path(__file__).resolve().parents[2] / "spaces" / "trionet_small.space").read_text()
BIG = SMALL.replace("stage s1 blocks 2 width 16 stride 1", "stage s1 blocks 4092 width 16 stride 1")


@pytest.fixture(scope="module")
def big():
    return compile_space_text(BIG, "big.space")


def test_sci_never_converts_to_float():
    assert sci(12345) == f"{12345:.3e}" and sci(0) == "0.000e+00"
    assert sci(10**5000) == "1.000e+5000"
    assert sci(3 * 10**400) == "3.000e+400"
    assert sci(999999 * 10**400) == "1.000e+406" and sci(-(10**400)) == "-1.000e+400"
    assert count_text(1234567) == "1,234,567" and count_value(7) == 7
    assert count_value(10**2000) == "1.000e+2000" and count_text("1.000e+2000") == "1.000e+2000"


def test_4096_block_space_compiles_with_size_and_costs(big):
    assert len(big.blocks) == 4096
    rep = report(big, with_costs=True)
    assert isinstance(rep["size"], str) and rep["size"] == rep["size_sci"] and "e+" in rep["size"]
    assert rep["costs"]["params_max"] > rep["costs"]["params_min"] > 0
    json.dumps(rep)  # a report always serialises (Python refuses ints of over 4,300 digits)


def test_4096_block_space_samples(big):
    arch = sample(big, random.Random(0))
    assert len(arch.blocks) == 4096
    check_arch(big, arch)
    assert emit(arch)


def test_cli_compile_and_diff_of_two_4096_block_spaces(tmp_path):
    a, b = tmp_path / "a.space", tmp_path / "b.space"
    a.write_text(BIG)
    b.write_text(BIG.replace("width 0.5x | 0.75x | 1.0x", "width 0.5x | 1.0x"))
    res = CliRunner().invoke(app, ["compile", str(a), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["size_sci"].startswith("1.")
    rep = diff_report(a, b)
    assert rep["size_a"] != rep["size_b"] and isinstance(rep["size_b"], str)
    res = CliRunner().invoke(app, ["diff", str(a), str(b)])
    assert res.exit_code == 0, res.output
    assert "space size 1." in res.output and "Traceback" not in res.output


def test_a_tiny_file_cannot_demand_unbounded_work():
    # 4,096 blocks of 4,096 widths each: 16.7M choices to tabulate; refused at the width, at once
    text = BIG.replace("width 0.5x | 0.75x | 1.0x", "width 1..4096").replace(
        "op conv(kernel=3) | local(span=5) | axial", "op conv(kernel=3)"
    )
    text = "\n".join(line for line in text.splitlines() if "heads" not in line)
    with pytest.raises(SpaceError, match="more than 262,144 choices") as exc:
        compile_space_text(text, "w.space")
    assert exc.value.line == text.splitlines().index("    width 1..4096") + 1

"""The front end is linear in the input's size, and refuses an oversized input before parsing.

Each hostile shape of ``benchmarks/parse_linearity.py`` is parsed at two sizes (4 and 32 KB);
the time per KB may not grow by more than 3x (quadratic spots grew it by the size ratio or more).
The bound is loose so a busy machine does not fail it; the benchmark reports the real figures.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.parser import MAX_SOURCE_BYTES, parse_document, read_text
from trionet_dsl.space.loader import compile_space_text

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "parse_linearity.py"
_spec = importlib.util.spec_from_file_location("parse_linearity", BENCH)
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _us_per_kb(text: str) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        try:
            compile_space_text(text)
        except SpaceError:
            pass
        best = min(best, time.perf_counter() - t0)
    return best * 1e6 / (len(text) / 1024)


@pytest.mark.parametrize("shape", ["comment lines", "trailing comments", "distinct stage names", "long lines"])
def test_time_per_kb_does_not_grow_with_size(shape):
    make = bench.SHAPES[shape]
    compile_space_text(make(1))  # warm-up
    small, large = _us_per_kb(make(4)), _us_per_kb(make(32))
    assert large < 3 * small, f"{shape}: {small:.0f} µs/KB at 4 KB, {large:.0f} µs/KB at 32 KB"


def test_comments_are_kept_with_their_positions():
    text = "# head\nspace s {  # tail\n  input 3x8x8; classes 2\n  stage s1 blocks 1 width 8  # t2\n}\n# end\n"
    doc = parse_document(text).doc
    assert doc.comments == {"space": (" head",), "eof": (" end",)}
    assert doc.trailing == {"space": " tail", "stage.s1": " t2"}


def test_oversized_text_is_refused_before_parsing():
    line = "# " + "x" * 1000 + "\n"
    text = line * (MAX_SOURCE_BYTES // len(line) + 2)
    t0 = time.perf_counter()
    with pytest.raises(SpaceError) as exc:
        parse_document(text, "big.space")
    assert time.perf_counter() - t0 < 1.0
    err = exc.value
    assert "larger than 4 MiB" in str(err) and err.file == "big.space"
    assert err.line == MAX_SOURCE_BYTES // len(line) + 1  # the line where the limit is crossed


def test_oversized_multibyte_text_counts_bytes():
    text = "# " + "é" * (MAX_SOURCE_BYTES // 2) + "\n"  # fewer characters than the limit, more bytes
    with pytest.raises(SpaceError, match="larger than 4 MiB"):
        parse_document(text)


def test_oversized_file_is_refused_unread(tmp_path):
    p = tmp_path / "big.space"
    with p.open("wb") as fh:
        fh.truncate(MAX_SOURCE_BYTES * 8)  # sparse: nothing to read but its first bytes
    with pytest.raises(SpaceError, match="larger than 4 MiB") as exc:
        read_text(p)
    assert exc.value.file == str(p) and exc.value.line == 1


def test_limit_sized_text_is_still_parsed():
    text = "space s { input 3x8x8; classes 2; stage s1 blocks 1 width 8 }\n"
    text += "#" * (MAX_SOURCE_BYTES - len(text) - 1) + "\n"
    assert len(text.encode()) == MAX_SOURCE_BYTES
    assert parse_document(text).doc.name == "s"

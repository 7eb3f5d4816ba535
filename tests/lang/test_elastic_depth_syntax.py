"""Elastic depth in the language: ``blocks 2 | 3 | 4`` / ``blocks 2..4``, ``S depth D`` in arch files."""

from __future__ import annotations

import pytest
from helpers import at, raised
from pydantic import ValidationError

from trionet_dsl.lang.emit import emit
from trionet_dsl.lang.ir import Stage
from trionet_dsl.lang.lexer import TrioNetLexer
from trionet_dsl.lang.parser import parse
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.resolve import resolve

HEAD = "space t {\n  input 3x16x16\n  classes 4\n  block bottleneck { op conv(kernel=3) }\n"


def _space(stage: str) -> str:
    return HEAD + f"  {stage}\n}}\n"


@pytest.mark.parametrize(
    ("written", "depths", "blocks"),
    [
        ("blocks 2 | 3 | 4", (2, 3, 4), 4),
        ("blocks 2..4", (2, 3, 4), 4),
        ("blocks 1..5 step 2", (1, 3, 5), 5),
        ("blocks 4 | 2", (4, 2), 4),  # as written; resolution sorts
        ("blocks 1 | 3..4", (1, 3, 4), 4),
        ("blocks 3", None, 3),
        ("blocks 3..3", None, 3),  # one choice: a fixed depth
    ],
)
def test_depth_choices_parse(written, depths, blocks):
    sp = parse(_space(f"stage s1 {written} width 8 stride 2"))
    st = sp.stages[0]
    assert (st.depths, st.blocks) == (depths, blocks)
    assert st.depth_choices == (tuple(sorted(depths)) if depths else (blocks,))
    assert parse(emit(sp)) == sp


def test_fmt_writes_choices_as_a_list():
    sp = parse(_space("stage s1 blocks 2..4 width 8"))
    assert "stage s1 blocks 2 | 3 | 4 width 8 stride 1" in emit(sp)


@pytest.mark.parametrize(
    ("stage", "needle", "message"),
    [
        ("stage s1 blocks 0 | 2 width 8", "0", "blocks must be >= 1"),
        ("stage s1 blocks 2 | 2 width 8", "2 | 2", "duplicate blocks choices"),
        ("stage s1 blocks -2 | 3 width 8", "-2", "negative blocks"),
        ("stage s1 blocks 4..2 width 8", "4..2", "empty range"),
        ("stage s1 blocks width 8", "width", "unexpected 'width'"),
        ("stage s1 blocks 2 | width 8", "width", "unexpected 'width'"),
        ("stage s1 blocks 2 | 3 width 8 { block 3 { width 4 } }", "3 {", "has at most 3 blocks; there is no block 3"),
    ],
)
def test_bad_depths_are_located_errors(stage, needle, message):
    text = _space(stage)
    err = raised(parse, text)
    assert message in err.message, str(err)
    assert (err.line, err.column) == at(text, needle, text.count(needle) - 1 if needle == "3 {" else 0), str(err)


def test_override_of_an_optional_block_applies_when_it_exists():
    rs = compile_space_text(_space("stage s1 blocks 1..3 width 8 { block 2 { width 4 } }"))
    assert [b.widths for b in rs.blocks] == [(8,), (8,), (4,)]
    assert [b.optional for b in rs.blocks] == [False, True, True]


def test_python_ir_is_checked():
    assert Stage(name="s", width=8, depths=(3, 1)).blocks == 3  # blocks: the largest choice
    with pytest.raises(ValidationError, match="largest depth"):
        Stage(name="s", blocks=5, width=8, depths=(1, 3))
    sp = parse(_space("stage s1 blocks 2 width 8"))
    bad = sp.model_copy(update={"stages": (Stage(name="s1", width=8, depths=(0, 2)),)})
    err = raised(resolve, bad)
    assert "must be distinct and >= 1" in err.message and "smallest depth is 1" in (err.hint or "")


def test_arch_depth_lines_round_trip_with_comments():
    text = (
        "arch a of t {\n"
        "  s1.0 conv(kernel=3) width 8\n"
        "  # the second stage is shallow\n"
        "  s2 depth 1  # one block\n"
        "  s2.0 conv(kernel=3) width 8\n"
        "}\n"
    )
    a = parse(text)
    assert a.depths == {"s2": 1}
    assert emit(a) == text
    assert parse(emit(a)) == a


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("s1 depth 0", "depth must be >= 1"),
        ("s1 depth 2; s1 depth 3", "given twice"),
        ("s1 depth two", "unexpected 'two'"),
    ],
)
def test_bad_arch_depth_lines(line, message):
    err = raised(parse, f"arch a of t {{\n  {line}\n}}\n")
    assert message in err.message and err.line == 2, str(err)


def test_depth_is_a_keyword_everywhere():
    from pygments.token import Keyword

    toks = list(TrioNetLexer().get_tokens("arch a of t {\n  s1 depth 2\n}\n"))
    assert (Keyword, "depth") in [(t, v) for t, v in toks if t in Keyword]
    err = raised(parse, _space("stage depth blocks 2 width 8"))
    assert "keyword" in err.message

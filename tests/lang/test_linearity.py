"""The front end refuses an oversized input before parsing, and keeps comments in one lexer pass.

Linearity itself is a speed claim: ``benchmarks/parse_linearity.py`` measures it (µs per KB at
three sizes per hostile shape) and the README reports its figures; tests do not time themselves.
"""

from __future__ import annotations

import pytest

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.parser import MAX_SOURCE_BYTES, parse_document, read_text


def test_comments_are_kept_with_their_positions():
    text = "# head\nspace s {  # tail\n  input 3x8x8; classes 2\n  stage s1 blocks 1 width 8  # t2\n}\n# end\n"
    doc = parse_document(text).doc
    assert doc.comments == {"space": (" head",), "eof": (" end",)}
    assert doc.trailing == {"space": " tail", "stage.s1": " t2"}


def test_oversized_text_is_refused_before_parsing():
    line = "# " + "x" * 1000 + "\n"
    text = line * (MAX_SOURCE_BYTES // len(line) + 2)
    with pytest.raises(SpaceError) as exc:
        parse_document(text, "big.space")
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

"""Valid JSON but hostile history lines: a located SpaceError for search --resume and diff --history."""

from __future__ import annotations

import json

import pytest

from trionet_dsl.app.diff_report import _accuracy
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.search.driver import read_history

GOOD = {"i": 0, "arch_key": "k", "accuracy": 0.5, "params": 10, "flops": 20, "strategy": "random", "seed": 0}

HOSTILE = [
    [1, 2],
    "text",
    None,
    42,
    {},
    {"arch_key": 7},
    {**GOOD, "accuracy": "high"},
    {**GOOD, "accuracy": True},
    {**GOOD, "accuracy": [0.5]},
    {**GOOD, "i": "0"},
    {**GOOD, "params": 1.5},
    {**GOOD, "flops": {"a": 1}},
]


@pytest.mark.parametrize("bad", HOSTILE, ids=[json.dumps(h)[:30] for h in HOSTILE])
def test_hostile_line_is_a_located_error(tmp_path, bad):
    h = tmp_path / "history.jsonl"
    h.write_text(json.dumps(GOOD) + "\n" + json.dumps(bad) + "\n" + json.dumps(GOOD) + "\n")
    with pytest.raises(SpaceError, match="history line is not a search record") as exc:
        read_history(h)
    assert exc.value.line == 2 and exc.value.file == str(h)
    with pytest.raises(SpaceError, match=r"history\.jsonl:2"):
        _accuracy([h], "k")  # what diff --history reads


def test_good_history_and_non_utf8(tmp_path):
    h = tmp_path / "history.jsonl"
    h.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "accuracy": None}) + "\n")
    assert len(read_history(h)) == 2 and _accuracy([h], "k") == 0.5
    h.write_bytes(b"\xff\xfe\n")
    with pytest.raises(SpaceError, match="cannot read history"):
        read_history(h)


def _cost(arch):
    return len(arch.blocks), sum(b.width for b in arch.blocks)


def _acc(arch):
    return {"accuracy": (sum(b.width for b in arch.blocks) % 97) / 97}


def test_cut_at_every_byte_of_the_last_line_then_resume_twice(small_space, tmp_path):
    from trionet_dsl.search.base import Limits, arch_key
    from trionet_dsl.search.driver import run_search

    def search(path, budget, resume):
        return run_search(
            small_space,
            "random",
            _acc,
            _cost,
            Limits(),
            budget,
            seed=3,
            progress=False,
            history_path=path,
            resume=resume,
        )

    full = search(tmp_path / "full.jsonl", 5, False)
    want = (tmp_path / "full.jsonl").read_text()
    base = tmp_path / "base.jsonl"
    search(base, 3, False)
    text = base.read_text()
    start = text.rstrip("\n").rfind("\n") + 1  # the last line
    hist = tmp_path / "h.jsonl"
    for cut in range(start, len(text)):  # every byte offset of the last line (its newline excluded)
        hist.write_text(text[:cut])
        search(hist, 4, True)
        res = search(hist, 5, True)
        assert hist.read_text() == want, f"cut at byte {cut}"
        assert [arch_key(o.arch) for o in res.history] == [arch_key(o.arch) for o in full.history]

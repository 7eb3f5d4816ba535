"""Round-trip properties (``parse(emit(x)) == x``) and fuzzing: only SpaceError may escape."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trionet_dsl.lang.emit import emit, fmt_float
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.ir import (
    Arch,
    ArchBlock,
    BlockDefaults,
    BlockOverride,
    BlockSpec,
    ChannelRange,
    Channels,
    InputShape,
    Multiplier,
    Op,
    Space,
    Stage,
    StemAttention,
    StemConv,
    StemPool,
)
from trionet_dsl.lang.keywords import STATEMENT_WORDS
from trionet_dsl.lang.parser import parse
from trionet_dsl.space.loader import compile_arch_text, compile_space_text, load_space

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "spaces"
SHIPPED = sorted(SPACES.glob("*.space")) + sorted((SPACES / "archs").glob("*.arch"))

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# the loaded profile (tests/conftest.py; --hypothesis-profile=long for a nightly-sized run) may ask for more
FUZZ = settings(
    max_examples=max(400, settings().max_examples), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

KEYWORDS = set(STATEMENT_WORDS)

# ------------------------------------------------------------------ strategies for IR
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)
stage_names = names.filter(lambda n: n not in KEYWORDS)
small = st.integers(1, 64)
pos = st.integers(1, 4096)
heads_choices = st.lists(st.integers(1, 64), min_size=1, max_size=4, unique=True).map(tuple)


@st.composite
def ops(draw, with_heads: bool = True):
    kind = draw(st.sampled_from(["conv", "local", "axial", "global"]))
    if kind == "conv":
        return Op(kind="conv", kernel=draw(st.integers(1, 15)), groups=draw(st.none() | st.integers(1, 64)))
    heads = draw(st.none() | heads_choices) if with_heads else None
    if kind == "global":
        return Op(kind="global", max_mib=draw(st.none() | st.integers(1, 4096)), heads=heads)
    if kind == "local":
        return Op(kind="local", span=draw(st.integers(1, 31)), heads=heads)
    return Op(
        kind="axial",
        span=draw(st.none() | st.integers(1, 63)),
        qk_ratio=draw(st.none() | st.integers(1, 8)),
        shared_pos=draw(st.none() | st.just(1)),
        bn=draw(st.none() | st.just(1)),
        heads=heads,
    )


op_lists = st.lists(ops(), min_size=1, max_size=4, unique_by=lambda o: o.signature).map(tuple)

multipliers = st.one_of(
    st.floats(min_value=1e-9, max_value=1e6, allow_nan=False, allow_infinity=False, exclude_min=False),
    st.sampled_from([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 1 / 3, 1e-7, 123456.789]),
).map(lambda f: Multiplier(factor=f))


@st.composite
def channel_ranges(draw):
    start = draw(st.integers(1, 2048))
    step = draw(st.integers(1, 64))
    stop = draw(st.integers(start, start + step * 100))
    return ChannelRange(start=start, stop=stop, step=step)


width_items = st.one_of(pos.map(lambda v: Channels(value=v)), channel_ranges(), multipliers)
width_lists = st.lists(width_items, min_size=1, max_size=4).map(tuple)

specs = st.builds(BlockSpec, ops=st.none() | op_lists, width=st.none() | width_lists, heads=st.none() | heads_choices)

stem_layers = st.one_of(
    st.builds(StemConv, kernel=st.integers(1, 11), channels=pos, stride=st.integers(1, 4)),
    st.builds(
        StemPool, kind=st.sampled_from(["maxpool", "avgpool"]), kernel=st.integers(1, 11), stride=st.integers(1, 4)
    ),
    st.builds(
        lambda span, heads, per_head, stride: StemAttention(
            op=Op(kind="local", span=span), channels=heads * per_head, heads=heads, stride=min(stride, span)
        ),
        st.sampled_from([1, 3, 5, 7, 9]),
        st.integers(1, 8),
        st.integers(1, 16),
        st.integers(1, 4),
    ),
)


@st.composite
def stages(draw, name: str):
    blocks = draw(st.integers(1, 6))
    idx = draw(st.lists(st.integers(0, blocks - 1), unique=True, max_size=blocks))
    # elastic depth: some other depth choices below the largest, in any order
    shorter = draw(st.lists(st.integers(1, blocks - 1), unique=True, max_size=3)) if blocks > 1 else []
    depths = draw(st.permutations([*shorter, blocks])) if shorter else None
    return Stage(
        name=name,
        blocks=blocks,
        depths=tuple(depths) if depths else None,
        width=draw(pos),
        stride=draw(st.integers(1, 4)),
        expansion=draw(st.none() | st.integers(1, 8)),
        spec=draw(specs),
        overrides=tuple(BlockOverride(index=i, spec=draw(specs)) for i in idx),
    )


comment_text = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=20).map(
    str.rstrip
)
comment_lines = st.lists(comment_text, min_size=1, max_size=3).map(tuple)


def _spec_anchors(spec: BlockSpec, path: str) -> list[str]:
    return [f"{path}.{w}" for w, v in (("op", spec.ops), ("width", spec.width), ("heads", spec.heads)) if v is not None]


def space_anchors(sp: Space) -> list[str]:
    out = ["space", "input", "classes", "block", "block.end", "end", "stem", "stem.end"]
    out += [f"stem.{i}" for i in range(len(sp.stem))]
    out += _spec_anchors(sp.block.spec, "block")
    for s in sp.stages:
        p = f"stage.{s.name}"
        out += [p, f"{p}.end", *_spec_anchors(s.spec, p)]
        for o in s.overrides:
            op = f"{p}.block.{o.index}"
            out += [op, f"{op}.end", *_spec_anchors(o.spec, op)]
    return out


@st.composite
def comments_for(draw, anchors: list[str]):
    keys = draw(st.lists(st.sampled_from([*anchors, "eof"]), unique=True, max_size=4))
    return {k: draw(comment_lines) for k in keys}


@st.composite
def trailing_for(draw, anchors: list[str]):
    keys = draw(st.lists(st.sampled_from(anchors), unique=True, max_size=4))
    return {k: draw(comment_text) for k in keys}


@st.composite
def spaces(draw, with_comments: bool = True):
    snames = draw(st.lists(stage_names, min_size=1, max_size=4, unique=True))
    sp = Space(
        name=draw(names),
        input=InputShape(channels=draw(small), height=draw(pos), width=draw(pos)),
        classes=draw(pos),
        stem=tuple(draw(st.lists(stem_layers, max_size=3))),
        block=BlockDefaults(
            type=draw(st.sampled_from(["bottleneck", "basic"])), expansion=draw(st.integers(1, 8)), spec=draw(specs)
        ),
        stages=tuple(draw(stages(n)) for n in snames),
    )
    if not with_comments:
        return sp
    return sp.model_copy(
        update={
            "comments": draw(st.just({}) | comments_for(space_anchors(sp))),
            "trailing": draw(st.just({}) | trailing_for(space_anchors(sp))),
        }
    )


@st.composite
def arches(draw, with_comments: bool = True):
    keys = draw(st.lists(st.tuples(stage_names, st.integers(0, 40)), unique=True, max_size=8))
    blocks = tuple(
        ArchBlock(stage=s, index=i, op=draw(ops(with_heads=False)), width=draw(pos), heads=draw(st.none() | small))
        for s, i in keys
    )
    # stated depths: of stages with blocks (the line is written before their first block) or without
    stage_pool = [*sorted({s for s, _ in keys}), "t9"]
    depths = draw(st.dictionaries(st.sampled_from(stage_pool), st.integers(1, 40), max_size=3))
    a = Arch(name=draw(names), space=draw(names), blocks=blocks, depths=depths)
    if not with_comments:
        return a
    anchors = ["arch", "end"] + [f"arch.{b.key}" for b in blocks] + [f"arch.depth.{s}" for s in depths]
    return a.model_copy(
        update={
            "comments": draw(st.just({}) | comments_for(anchors)),
            "trailing": draw(st.just({}) | trailing_for(anchors)),
        }
    )


# ------------------------------------------------------------------ round-trip properties
@PROPS
@given(spaces())
def test_space_roundtrip(sp):
    text = emit(sp)
    back = parse(text)
    assert back == sp
    assert back.comments == sp.comments and back.trailing == sp.trailing  # __eq__ compares them too; say it
    assert emit(back) == text


@PROPS
@given(arches())
def test_arch_roundtrip(a):
    text = emit(a)
    back = parse(text)
    assert back == a and back.comments == a.comments and back.trailing == a.trailing
    assert emit(back) == text


# ------------------------------------------------------------------ comments everywhere (text level)
comment_words = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=12)


@st.composite
def commented_files(draw):
    """A file with comments before/after every line, at line ends, inside blocks, before braces.

    Returns (text, expected layout). The code is a canonical file whose lines may be joined
    (``block 0 { op axial; heads 8 }  # x``), which must not move any comment: every line of
    a canonical file starts one statement or closes one, so a comment after a joined line
    still follows the same statement.
    """
    doc = draw(st.one_of(spaces(with_comments=False), arches(with_comments=False)))
    code = emit(doc).split("\n")[:-1]
    n = 0

    def comment() -> str:
        nonlocal n
        n += 1
        return (draw(st.sampled_from(["", " ", "  "])) + f"c{n}" + draw(comment_words)).rstrip()

    def own_lines() -> list[tuple[str, str]]:
        return [(draw(st.sampled_from(["", "  ", "\t", "      "])), comment()) for _ in range(draw(st.integers(0, 2)))]

    befores = [own_lines() for _ in code]
    parts: list[str] = []
    expected: list[tuple[str, str]] = []
    for i, line in enumerate(code):
        parts += [f"{ind}#{c}\n" for ind, c in befores[i]]
        expected += [("own", c) for _, c in befores[i]]
        expected.append(("code", line.strip()))
        if draw(st.booleans()):
            c = comment()
            parts.append(f"{line}{draw(st.sampled_from([' ', '   ', chr(9)]))}#{c}\n")
            expected.append(("eol", c))
        elif i + 1 < len(code) and not befores[i + 1] and draw(st.booleans()):
            # join with the next line; ';' may end any statement or closing brace, not an opening brace
            opens = line.rstrip().endswith("{")
            parts.append(line + draw(st.sampled_from([" ", "\t"] if opens else [" ", "; ", ";"])))
        else:
            parts.append(line + "\n")
    after = own_lines()
    parts += [f"{ind}#{c}\n" for ind, c in after]
    expected += [("own", c) for _, c in after]
    text = "".join(parts)
    return text, expected


def layout(text: str) -> list[tuple[str, str]]:
    """Code lines and comments in order; a comment is 'eol' after code on its line, else 'own'."""
    seq = []
    for line in text.split("\n"):
        code, hashmark, comment = line.partition("#")
        if code.strip():
            seq.append(("code", code.strip()))
        if hashmark:
            seq.append(("eol" if code.strip() else "own", comment.rstrip()))
    return seq


@PROPS
@given(commented_files())
def test_fmt_keeps_every_comment_in_place(case):
    text, expected = case
    doc = parse(text)
    out = emit(doc)
    # every comment exactly once, in the same order among the statements, own-line or end-of-line as written
    assert layout(out) == expected
    assert parse(out) == doc
    assert emit(parse(out)) == out  # fmt is a fixed point


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=1e300, exclude_min=True, allow_nan=False, allow_infinity=False))
def test_fmt_float_is_positional_and_exact(x):
    s = fmt_float(x)
    assert re.fullmatch(r"[0-9]+\.[0-9]+", s), s
    assert float(s) == x


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_files_are_fmt_clean(path):
    text = path.read_text()
    doc = parse(text, str(path))
    assert emit(doc) == text
    assert parse(emit(doc)) == doc


def test_fmt_normalises_layout_and_keeps_comments():
    messy = (
        "#top\nspace  m{input 3x8x8;classes 2 # c\nblock bottleneck{op conv|axial(heads=2) ; width 1x}"
        "stage s1 width 4 blocks 1{block 0{width 4}}}"
    )
    out = emit(parse(messy))
    assert (
        out
        == """#top
space m {
  input 3x8x8
  classes 2  # c
  block bottleneck expansion 4 {
    op conv(kernel=3) | axial(heads=2)
    width 1.0x
  }
  stage s1 blocks 1 width 4 stride 1 {
    block 0 {
      width 4
    }
  }
}
"""
    )
    assert emit(parse(out)) == out


# ------------------------------------------------------------------ fuzzing: only SpaceError
@pytest.fixture(scope="module")
def r50():
    return load_space(SPACES / "trionet_r50.space")


SOURCES = [p.read_text() for p in SHIPPED]
TOKEN = re.compile(r"#[^\n]*|[0-9]+(?:\.[0-9]+)?x?|[A-Za-z_][A-Za-z0-9_]*|\.\.|\s+|.")
SNIPPETS = [
    "{",
    "}",
    "(",
    ")",
    "|",
    ";",
    ",",
    "=",
    ".",
    "..",
    "#",
    "\n",
    "x",
    "0",
    "1",
    "2",
    "7",
    "8",
    "0.5x",
    "3x3",
    "step",
    "stage",
    "block",
    "op",
    "width",
    "heads",
    "local",
    "axial",
    "conv",
    "global",
    "basic",
    "bottleneck",
    "groups=4",
    "max_mib=1",
    "blocks",
    "blocks 1 | 2",
    "2..3",
    "depth",
    "s1 depth 2",
    "stride",
    "9" * 30,
    "-1",
    "\u2028",
    "\x00",
    "é",
    "\t",
    "s9.0",
    "of",
    "space",
    "arch",
]


SLOW_INPUT_S = 1.0
"""A fuzz input of a few hundred bytes that takes longer than this to parse or compile fails the test."""


def only_space_errors(text: str, r50) -> None:
    for fn in (parse, compile_space_text, lambda t: compile_arch_text(t, "<fuzz>", r50)):
        t0 = time.perf_counter()
        try:
            fn(text)
        except SpaceError as e:
            rendered = str(e)
            assert "error:" in rendered
            assert "internal error" not in e.message, rendered  # the last-resort net must never fire
            assert e.line >= 0 and e.column >= 0
        took = time.perf_counter() - t0
        assert took < SLOW_INPUT_S, f"slow input ({took:.2f} s, {len(text)} chars): {text[:200]!r}"


@st.composite
def char_mutations(draw):
    text = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 6)))
        kind = draw(st.sampled_from(["delete", "insert", "replace"]))
        piece = "" if kind == "delete" else draw(st.sampled_from(SNIPPETS) | st.text(max_size=3))
        text = text[:i] + piece + (text[i:] if kind == "insert" else text[j:])
    return text


@st.composite
def token_mutations(draw):
    toks = TOKEN.findall(draw(st.sampled_from(SOURCES)))
    for _ in range(draw(st.integers(1, 4))):
        i, j = draw(st.integers(0, len(toks) - 1)), draw(st.integers(0, len(toks) - 1))
        kind = draw(st.sampled_from(["swap", "delete", "duplicate", "replace"]))
        if kind == "swap":
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "delete":
            del toks[i]
        elif kind == "duplicate":
            toks.insert(j, toks[i])
        else:
            toks[i] = draw(st.sampled_from(SNIPPETS))
    return "".join(toks)


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_random_text(r50, text):
    only_space_errors(text, r50)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(r50, data):
    only_space_errors(data.decode("utf-8", errors="replace"), r50)
    only_space_errors(data.decode("latin-1"), r50)


@FUZZ
@given(char_mutations())
def test_fuzz_character_mutations(r50, text):
    only_space_errors(text, r50)


@FUZZ
@given(token_mutations())
def test_fuzz_token_mutations(r50, text):
    only_space_errors(text, r50)


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            [
                *SNIPPETS,
                "input 3x32x32",
                "classes 10",
                "block bottleneck {",
                "stage s1",
                "blocks 2",
                "blocks 1 | 3",
                "blocks 1..4 step 2",
                "s1 depth 1",
                "s2 depth 0",
                "width 16",
                "heads 2 | 4",
                "op conv | local | axial",
                "op conv(kernel=3, groups=4) | global",
                "block basic {",
                "32..64 step 16",
                "s1.0",
                "arch a of trionet_r50 {",
                "space t {",
                "stem {",
                "conv 3x3 8",
                "local(span=7) width 8 heads 2 stride 2",
                "maxpool 3x3 stride 2",
            ]
        ),
        max_size=40,
    ).map(" ".join)
)
def test_fuzz_token_soup(r50, text):
    only_space_errors(text, r50)
    only_space_errors("space t { input 3x32x32 classes 10 " + text, r50)
    only_space_errors("arch a of trionet_r50 { " + text, r50)


@pytest.mark.parametrize(
    "text",
    [
        "space t { input 3x32x32 classes 10 block bottleneck { op conv } stage s1 blocks 99999999999 width 8 }",
        "space t { input 3x32x32 classes 10 block bottleneck { op conv } stage s1 blocks 2147483647 width 8 }",
        "space t { input 3x32x32 classes 10 block bottleneck { op conv; width 1..2147483647 } "
        "stage s1 blocks 1 width 8 }",
        "space t { input 3x32x32 classes 10 block bottleneck { op conv; width " + "9" * 400 + ".0x } "
        "stage s1 blocks 1 width 8 }",
        "space t { input 3x32x32 classes 10 block bottleneck { op conv; width 999999.0x } stage s1 blocks 1 width "
        "2147483647 }",
        "space t { input 3x32x32 classes 10 block bottleneck { op axial; heads 1..2147483647 } stage s1 blocks 1 "
        "width 8 }",
        "arch a of trionet_r50 { s1." + "9" * 5000 + " conv width 8 }",
    ],
)
def test_regressions_huge_numbers_give_space_errors(text, r50):
    """Found by fuzzing: these used to hang or raise OverflowError / ValueError."""
    with pytest.raises(SpaceError):
        if text.startswith("arch"):
            compile_arch_text(text, "<t>", r50)
        else:
            compile_space_text(text)

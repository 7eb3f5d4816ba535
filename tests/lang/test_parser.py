"""Text -> IR: every construct of the language, comments, separators and syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import at, raised

from trionet_dsl.lang.emit import emit
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.ir import (
    Arch,
    ArchBlock,
    BlockOverride,
    BlockSpec,
    ChannelRange,
    Channels,
    InputShape,
    Multiplier,
    Op,
    Space,
    StemConv,
    StemPool,
)
from trionet_dsl.lang.parser import MAX_INT, parse, parse_document

SPACES = Path(__file__).resolve().parents[2] / "spaces"

MINI = """space mini {
  input 3x32x32
  classes 10
  block bottleneck expansion 2 {
    op conv(kernel=3) | local(span=5) | axial
    width 0.5x | 1.0x
    heads 2 | 4
  }
  stage s1 blocks 2 width 16 stride 1
  stage s2 blocks 2 width 32 stride 2
}
"""


def err(text: str, file: str = "f.space") -> SpaceError:
    return raised(parse, text, file)


# ------------------------------------------------------------------ positive: space constructs
def test_header_input_classes():
    sp = parse(MINI)
    assert isinstance(sp, Space)
    assert sp.name == "mini"
    assert sp.input == InputShape(channels=3, height=32, width=32)
    assert sp.classes == 10
    assert sp.stem == ()


def test_non_square_input():
    sp = parse(MINI.replace("3x32x32", "1x28x40"))
    assert (sp.input.channels, sp.input.height, sp.input.width) == (1, 28, 40)


def test_stem_layers_with_and_without_stride():
    sp = parse(
        MINI.replace(
            "  classes 10\n",
            """  classes 10
  stem {
    conv 7x7 64 stride 2
    conv 3x3 32
    maxpool 3x3 stride 2
    avgpool 5x5
  }
""",
        )
    )
    assert sp.stem == (
        StemConv(kernel=7, channels=64, stride=2),
        StemConv(kernel=3, channels=32, stride=1),
        StemPool(kind="maxpool", kernel=3, stride=2),
        StemPool(kind="avgpool", kernel=5, stride=1),
    )


def test_block_defaults_expansion_and_default_expansion():
    sp = parse(MINI)
    assert sp.block.type == "bottleneck" and sp.block.expansion == 2
    sp4 = parse(MINI.replace("block bottleneck expansion 2 {", "block bottleneck {"))
    assert sp4.block.expansion == 4


def test_op_choices_values():
    sp = parse(
        MINI.replace(
            "op conv(kernel=3) | local(span=5) | axial",
            "op conv | conv(kernel=5) | local(span=9, heads=4|8) | axial | axial(span=15, heads=1..3)",
        )
    )
    ops = sp.block.spec.ops
    assert ops[0] == Op(kind="conv", kernel=3, span=None, heads=None)  # default kernel is written out
    assert ops[1] == Op(kind="conv", kernel=5)
    assert ops[2] == Op(kind="local", span=9, heads=(4, 8))
    assert ops[3] == Op(kind="axial", span=None)
    assert ops[4] == Op(kind="axial", span=15, heads=(1, 2, 3))
    assert [o.signature for o in ops] == [
        "conv(kernel=3)",
        "conv(kernel=5)",
        "local(span=9)",
        "axial",
        "axial(span=15)",
    ]


def test_bare_local_gets_default_span():
    sp = parse(MINI.replace("local(span=5)", "local()"))
    assert sp.block.spec.ops[1] == Op(kind="local", span=7)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("64", (Channels(value=64),)),
        ("32 | 48 | 64", (Channels(value=32), Channels(value=48), Channels(value=64))),
        ("32..128 step 16", (ChannelRange(start=32, stop=128, step=16),)),
        ("8..10", (ChannelRange(start=8, stop=10, step=1),)),
        ("0.5x | 0.75x | 1x", (Multiplier(factor=0.5), Multiplier(factor=0.75), Multiplier(factor=1.0))),
        ("2.0x | 8 | 4..6 step 2", (Multiplier(factor=2.0), Channels(value=8), ChannelRange(start=4, stop=6, step=2))),
    ],
)
def test_width_kinds(text, expected):
    sp = parse(MINI.replace("width 0.5x | 1.0x", f"width {text}"))
    assert sp.block.spec.width == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8", (8,)),
        ("2 | 4 | 8", (2, 4, 8)),
        ("1..4", (1, 2, 3, 4)),
        ("2..8 step 2", (2, 4, 6, 8)),
        ("1 | 4..5", (1, 4, 5)),
        ("3..10 step 4", (3, 7)),
    ],
)
def test_heads_lists_and_ranges(text, expected):
    sp = parse(MINI.replace("heads 2 | 4", f"heads {text}"))
    assert sp.block.spec.heads == expected


def test_stage_attrs_in_any_order():
    a = parse(MINI.replace("stage s2 blocks 2 width 32 stride 2", "stage s2 stride 2 expansion 3 width 32 blocks 5"))
    st = a.stages[1]
    assert (st.name, st.blocks, st.width, st.stride, st.expansion) == ("s2", 5, 32, 2, 3)
    assert a.stages[0].stride == 1 and a.stages[0].expansion is None
    b = parse(MINI.replace("stage s1 blocks 2 width 16 stride 1", "stage s1 width 16 blocks 2"))
    assert b.stages[0] == parse(MINI).stages[0]


def test_stage_level_spec_and_overrides():
    sp = parse(
        MINI.replace(
            "stage s2 blocks 2 width 32 stride 2",
            """stage s2 blocks 3 width 32 stride 2 {
    op conv | axial
    heads 8
    block 0 { op conv(kernel=5) }
    block 2 {
      width 16 | 32
      heads 4
    }
  }""",
        )
    )
    st = sp.stages[1]
    assert st.spec == BlockSpec(ops=(Op(kind="conv", kernel=3), Op(kind="axial")), heads=(8,))
    assert st.overrides == (
        BlockOverride(index=0, spec=BlockSpec(ops=(Op(kind="conv", kernel=5),))),
        BlockOverride(index=2, spec=BlockSpec(width=(Channels(value=16), Channels(value=32)), heads=(4,))),
    )
    # an empty body is allowed and means nothing
    e = parse(MINI.replace("stage s1 blocks 2 width 16 stride 1", "stage s1 blocks 2 width 16 stride 1 { }"))
    assert e.stages[0] == parse(MINI).stages[0]


def test_semicolons_and_one_line_layout():
    one = (
        "space mini { input 3x32x32; classes 10; block bottleneck expansion 2 { op conv(kernel=3) | "
        "local(span=5) | axial; width 0.5x | 1.0x; heads 2 | 4; }; stage s1 blocks 2 width 16 stride 1; "
        "stage s2 blocks 2 width 32 stride 2; }"
    )
    assert parse(one) == parse(MINI)
    free = MINI.replace("\n", "\n\n   ").replace("  classes", "\tclasses")
    assert parse(free) == parse(MINI)


def test_comments_everywhere_are_kept_and_anchored():
    text = """# header line 1
# header line 2
space mini {  # trailing on the header
  input 3x32x32  # input trailing
  # before classes
  classes 10
  stem {
    conv 3x3 16 stride 2  # the stem conv
    # before stem close
  }
  block bottleneck expansion 2 {
    op conv | axial
    # before width
    width 1.0x
    heads 2
    # before block close
  }
  stage s1 blocks 2 width 16 stride 1 {
    block 1 {
      op conv  # override op
      # before override close
    }
    # before stage close
  }
  # before end
}
# after everything
"""
    sp = parse(text)
    assert sp.comments == {
        "space": (" header line 1", " header line 2"),
        "classes": (" before classes",),
        "stem.end": (" before stem close",),
        "block.width": (" before width",),
        "block.end": (" before block close",),
        "stage.s1.block.1.end": (" before override close",),
        "stage.s1.end": (" before stage close",),
        "end": (" before end",),
        "eof": (" after everything",),
    }
    assert sp.trailing == {
        "space": " trailing on the header",
        "input": " input trailing",
        "stem.0": " the stem conv",
        "stage.s1.block.1.op": " override op",
    }
    # comments do not change the meaning
    assert sp.model_copy(update={"comments": {}, "trailing": {}}) == parse(
        "space mini { input 3x32x32 classes 10 stem { conv 3x3 16 stride 2 } block bottleneck expansion 2 "
        "{ op conv | axial; width 1.0x; heads 2 } stage s1 blocks 2 width 16 { block 1 { op conv } } }"
    )


def test_trailing_comment_stays_with_the_statement_it_follows():
    # after a one-line block: it trails the block's closing brace, not a statement inside it
    sp = parse(
        MINI.replace(
            "  stage s1 blocks 2 width 16 stride 1\n",
            "  # above\n  stage s1 blocks 2 width 16 stride 1 { op conv; width 16 }  # trailing\n",
        )
    )
    assert sp.comments["stage.s1"] == (" above",)
    assert sp.trailing == {"stage.s1.end": " trailing"}
    # after the last of several statements on a line: that statement
    sp = parse(
        MINI.replace("    width 0.5x | 1.0x\n    heads 2 | 4\n", "    width 0.5x | 1.0x; heads 2 | 4  # of heads\n")
    )
    assert sp.trailing == {"block.heads": " of heads"}
    # after an opening brace: the statement it opens
    sp = parse(
        MINI.replace(
            "stage s2 blocks 2 width 32 stride 2", "stage s2 blocks 2 width 32 stride 2 {  # opened\n  op conv\n}"
        )
    )
    assert sp.trailing == {"stage.s2": " opened"}


def test_readme_per_block_override_comment_is_not_moved_into_the_block():
    text = MINI.replace(
        "stage s2 blocks 2 width 32 stride 2",
        "stage s2 blocks 2 width 32 stride 2 {\n    block 0 { op axial; heads 4 }   # per-block override\n  }",
    )
    sp = parse(text)
    assert (
        sp.trailing == {"stage.s2.block.0.end": " per-block override"} and "stage.s2.block.0.heads" not in sp.comments
    )
    out = emit(sp)
    assert "      op axial\n      heads 4\n    }  # per-block override\n" in out
    assert emit(parse(out)) == out and parse(out) == sp


def test_a_statement_spanning_lines_keeps_its_first_end_of_line_comment_on_its_line():
    text = MINI.replace(
        "  stage s1 blocks 2 width 16 stride 1\n",
        "  stage s1 blocks 2  # first\n    width 16  # second\n    stride 1  # third\n",
    )
    sp = parse(text)
    # one canonical line holds one end-of-line comment; the others stay before the next statement
    assert sp.trailing["stage.s1"] == " first"
    assert sp.comments["stage.s2"] == (" second", " third")
    out = emit(sp)
    assert "  stage s1 blocks 2 width 16 stride 1  # first\n  # second\n  # third\n  stage s2" in out
    assert emit(parse(out)) == out and parse(out) == sp


def test_comment_with_hash_and_braces_inside():
    sp = parse("#  a {brace} # and ; stuff\n" + MINI)
    assert sp.comments["space"] == ("  a {brace} # and ; stuff",)


def test_shipped_r50_space_parses_to_expected_ir():
    sp = parse((SPACES / "trionet_r50.space").read_text())
    assert sp.name == "trionet_r50"
    assert sp.stem == (StemConv(kernel=7, channels=64, stride=2), StemPool(kind="maxpool", kernel=3, stride=2))
    assert [(s.name, s.blocks, s.width, s.stride) for s in sp.stages] == [
        ("s1", 3, 64, 1),
        ("s2", 4, 128, 2),
        ("s3", 6, 256, 2),
        ("s4", 3, 512, 2),
    ]
    assert sp.block.spec.heads == (4, 8)
    assert sp.block.spec.width == (Multiplier(factor=0.5), Multiplier(factor=0.75), Multiplier(factor=1.0))
    assert len(sp.comments["space"]) == 11 and sp.comments["block"] == (" defaults for every block below",)


# ------------------------------------------------------------------ positive: arch
ARCH = """# provenance
arch mix of mini {
  s1.0 conv(kernel=3) width 8
  s1.1 local(span=5)  width 16 heads 4  # attention here
  s2.0 axial width 32 heads 2
  s2.1 axial width 16 heads 4;
}
"""


def test_arch_file():
    a = parse(ARCH)
    assert isinstance(a, Arch)
    assert (a.name, a.space) == ("mix", "mini")
    assert a.blocks == (
        ArchBlock(stage="s1", index=0, op=Op(kind="conv", kernel=3), width=8),
        ArchBlock(stage="s1", index=1, op=Op(kind="local", span=5), width=16, heads=4),
        ArchBlock(stage="s2", index=0, op=Op(kind="axial"), width=32, heads=2),
        ArchBlock(stage="s2", index=1, op=Op(kind="axial"), width=16, heads=4),
    )
    assert a.block("s2.0").heads == 2
    assert a.comments == {"arch": (" provenance",)}
    assert a.trailing == {"arch.s1.1": " attention here"}


def test_arch_heads_before_width():
    a = parse("arch a of b { s1.0 axial heads 4 width 16 }")
    assert a.blocks[0].width == 16 and a.blocks[0].heads == 4


def test_parse_document_records_spans():
    pd = parse_document(MINI, "m.space")
    assert pd.source_map.file == "m.space"
    assert pd.source_map.spans["classes"][:2] == at(MINI, "classes 10")
    assert pd.source_map.spans["block.heads"][:2] == at(MINI, "heads 2")
    assert pd.source_map.spans["stage.s2"][:2] == at(MINI, "stage s2")


# ------------------------------------------------------------------ negative: syntax
def test_missing_brace_is_unexpected_end_of_file():
    text = MINI.rstrip()[:-1]  # drop the final '}'
    e = err(text)
    assert e.message == "unexpected end of file"
    last = text.splitlines()
    assert (e.line, e.column) == (len(last), len(last[-1]) + 1)
    assert "'}' is probably missing" in e.hint


def test_empty_file_says_so():
    for text, message in (
        ("", "the file is empty"),
        (" \n\t\n", "the file is empty"),
        ("   \n# only a comment\n", "the file has only comments"),
    ):
        e = err(text)
        assert (e.message, e.line, e.column) == (message, 1, 1)
        assert "space NAME {" in e.hint and "arch NAME of SPACE {" in e.hint
        assert str(e).startswith(f"f.space:1:1: error: {message}")
    # a file that starts a document and stops is still an unclosed document
    assert err("# c\nspace x {").message == "unexpected end of file"


# ------------------------------------------------------------------ negative: hints that name the cause
def test_arch_block_inside_a_space():
    for where, text in (
        ("space level", MINI.replace("  stage s2", "  s1.0 conv(kernel=3) width 8\n  stage s2")),
        ("block defaults", MINI.replace("    heads 2 | 4\n", "    heads 2 | 4\n    s1.0 conv(kernel=3) width 8\n")),
        (
            "stage body",
            MINI.replace(
                "stage s2 blocks 2 width 32 stride 2",
                "stage s2 blocks 2 width 32 stride 2 {\n    s1.0 conv(kernel=3) width 8\n  }",
            ),
        ),
    ):
        e = err(text)
        assert e.message == "arch block 's1.0' inside space 'mini'", where
        assert (e.line, e.column, e.width) == (*at(text, "s1.0"), 2), where
        assert ".arch file" in e.hint and "arch NAME of mini" in e.hint
        assert "'block 0 { op ...; width ... }' in the body of stage s1" in e.hint
        rendered = str(e).splitlines()
        assert rendered[2].index("^^") == rendered[1].index("s1.0")


def test_arch_block_or_document_after_the_space():
    text = MINI + "s1.0 conv(kernel=3) width 8\n"
    e = err(text)
    assert e.message == "arch block 's1.0' after the end of space 'mini'"
    assert (e.line, e.column) == at(text, "s1.0") and "arch NAME of mini {" in e.hint
    text = MINI + "# the best one\narch best of mini {\n  s1.0 conv(kernel=3) width 8\n}\n"
    e = err(text)
    assert e.message == "a second document ('arch') after the end of space 'mini'"
    assert (e.line, e.column) == at(text, "arch best") and "file of its own" in e.hint
    arch = "arch a of mini {\n  s1.0 conv width 8\n}\n  s1.1 conv width 8\n"
    e = err(arch)
    assert e.message == "arch block 's1.1' after the end of arch 'a'" and "inside arch 'a'" in e.hint
    e = err(MINI.replace("stride 2\n}", "stride 2\n}\n}"))
    assert e.message == "unexpected '}' after the end of space 'mini'" and "a '}' too many" in e.hint


@pytest.mark.parametrize(
    "old, new, message, hint",
    [
        ("stage s1 blocks 2 width 16", "stage s1 blocks 2 width -16", "negative width -16", "channel counts >= 1"),
        ("width 0.5x | 1.0x", "width 0.5x | -8", "negative width -8", "channel counts >= 1"),
        ("width 0.5x | 1.0x", "width -0.5x", "negative width -0.5x", "such as 0.5x"),
        ("heads 2 | 4", "heads -2 | 4", "negative heads -2", "head counts are >= 1"),
        ("local(span=5)", "local(span=-5)", "negative span -5", "odd numbers >= 1"),
        ("stride 2\n}", "stride -2\n}", "negative stride -2", "strides are >= 1"),
    ],
)
def test_negative_numbers(old, new, message, hint):
    text = MINI.replace(old, new)
    e = err(text)
    number = message.split()[-1]
    assert e.message == message and (e.line, e.column, e.width) == (*at(text, number), len(number))
    assert hint in e.hint
    e = err("arch a of mini {\n  s1.0 conv width -8\n}\n")
    assert e.message == "negative width -8" and (e.line, e.column) == (2, 19)


def test_block_override_outside_a_stage():
    text = MINI.replace("  stage s2", "  block 0 { op axial; heads 4 }\n  stage s2")
    e = err(text)
    assert e.message == "block override 'block 0 { ... }' outside a stage"
    assert (e.line, e.column, e.width) == (*at(text, "block 0"), 5)
    assert "stage s1 ... { block 0 { ... } }" in e.hint and "block bottleneck" in e.hint
    # an override inside a stage body is fine
    ok = MINI.replace(
        "stage s2 blocks 2 width 32 stride 2", "stage s2 blocks 2 width 32 stride 2 { block 0 { op axial } }"
    )
    assert parse(ok).stages[1].overrides[0].index == 0


@pytest.mark.parametrize(
    "widths, number", [("0.5 | 1.0x", "0.5"), ("1.0x | 0.5", "0.5"), ("1.5", "1.5"), ("16 | 0.75", "0.75")]
)
def test_multiplier_without_x(widths, number):
    text = MINI.replace("width 0.5x | 1.0x", f"width {widths}")
    e = err(text)
    assert e.message == f"width {number} needs an 'x' to be a multiplier"
    assert (e.line, e.column, e.width) == (*at(text, number), len(number))
    assert e.hint.startswith(f"write {number}x for {number} times the stage's width")
    e = err(MINI.replace("heads 2 | 4", "heads 2.5"))
    assert e.message == "2.5 is not a whole number" and "0.5x" in e.hint


def test_stray_character():
    text = MINI.replace("classes 10", "classes 10 $")
    e = err(text)
    assert e.message == "unexpected character '$'"
    assert (e.line, e.column) == at(text, "$")


def test_misspelt_keyword_stage():
    text = MINI.replace("stage s2", "stge s2")
    e = err(text)
    assert e.message == "unexpected 'stge'"
    assert (e.line, e.column, e.width) == (*at(text, "stge"), 4)
    assert e.hint.startswith("did you mean 'stage'?")


def test_unexpected_token_lists_expected():
    text = MINI.replace("classes 10", "classes ten")
    e = err(text)
    assert e.message == "unexpected 'ten'"
    assert (e.line, e.column) == at(text, "ten")
    assert e.hint == "expected an integer"


@pytest.mark.parametrize(
    "source", ["space s { input 3x32x32 classes 10 stage s1 blocks 1 width 4 ", "arch a of b { s1.0 conv width 4"]
)
def test_unclosed_documents(source):
    assert err(source).message == "unexpected end of file"


def test_error_renders_location_excerpt_and_caret():
    text = MINI.replace("local(span=5)", "locl(span=5)")
    e = err(text, "spaces/x.space")
    line, col = at(text, "locl")
    rendered = str(e).splitlines()
    assert rendered[0] == f"spaces/x.space:{line}:{col}: error: unknown operator 'locl'"
    assert rendered[1] == f"{line:>4} | " + text.splitlines()[line - 1]
    caret_line = rendered[2]
    assert caret_line.index("^") == rendered[1].index("locl")
    assert caret_line.count("^") == 4
    assert rendered[3].startswith("hint: did you mean 'local'")


def test_excerpt_counts_lines_like_the_parser():
    # \u2028 and \x0c are line breaks for str.splitlines but not for the parser
    text = "# a\u2028b\x0c\n" + MINI.replace("local(span=5)", "locl(span=5)")
    e = err(text)
    assert e.excerpt().splitlines()[0].endswith("op conv(kernel=3) | locl(span=5) | axial")


# ------------------------------------------------------------------ negative: structure found by the parser
def test_misspelt_operator():
    text = MINI.replace("local(span=5)", "locl(span=5)")
    e = err(text)
    assert e.message == "unknown operator 'locl'"
    assert (e.line, e.column) == at(text, "locl")
    assert "did you mean 'local'" in e.hint


def test_unknown_op_arg():
    text = MINI.replace("local(span=5)", "local(spam=5)")
    e = err(text)
    assert e.message == "operator 'local' has no argument 'spam'"
    assert (e.line, e.column) == at(text, "spam")
    assert "did you mean 'span'" in e.hint
    e2 = err(MINI.replace("conv(kernel=3)", "conv(kernel=3, heads=4)"))
    assert e2.message == "operator 'conv' has no argument 'heads'"


def test_op_arg_given_twice_and_multi_valued_kernel():
    text = MINI.replace("local(span=5)", "local(span=5, span=7)")
    e = err(text)
    assert e.message == "argument 'span' given twice" and (e.line, e.column) == at(text, "span", 1)
    e = err(MINI.replace("conv(kernel=3)", "conv(kernel=3|5)"))
    assert "'kernel' takes one value" in e.message and "conv(kernel=3) | conv(kernel=5)" in e.hint


def test_duplicate_operator_choice():
    text = MINI.replace("| axial", "| conv")
    e = err(text)
    assert e.message == "duplicate operator choice conv(kernel=3)"
    assert (e.line, e.column) == at(text, "conv", 1)


def test_empty_range():
    text = MINI.replace("width 0.5x | 1.0x", "width 128..32")
    e = err(text)
    assert e.message == "empty range 128..32"
    assert (e.line, e.column) == at(text, "128..32")
    assert e.hint == "write it as 32..128"
    e = err(MINI.replace("heads 2 | 4", "heads 8..4"))
    assert e.message == "empty range 8..4"


def test_huge_range_is_refused():
    e = err(MINI.replace("heads 2 | 4", "heads 1..100000000"))
    assert "values, more than" in e.message


def test_huge_integers_are_refused_not_crashing():
    e = err(MINI.replace("classes 10", "classes " + "9" * 5000))
    assert "too large" in e.message and str(MAX_INT) in e.hint
    assert e.line == 3
    e = err(MINI.replace("3x32x32", "3x99999999999x32"))
    assert "too large" in e.message
    # leading zeros are fine
    assert parse(MINI.replace("classes 10", "classes 0010")).classes == 10


def test_duplicate_heads_choice():
    e = err(MINI.replace("heads 2 | 4", "heads 2 | 1..3"))
    assert e.message.startswith("duplicate heads choices")


def test_duplicate_stage_names():
    text = MINI.replace("stage s2", "stage s1")
    e = err(text)
    assert e.message == "duplicate stage name 's1'"
    # reported at the second occurrence
    assert (e.line, e.column) == at(text, "s1 blocks", 1)


def test_stage_named_like_a_keyword():
    e = err(MINI.replace("stage s2", "stage width"))
    assert e.message == "'width' is a keyword and cannot name a stage"


@pytest.mark.parametrize(
    "dup, word",
    [
        ("  classes 10\n  classes 20\n", "classes"),
        ("  input 3x32x32\n  input 3x32x32\n", "input"),
    ],
)
def test_duplicate_top_statements(dup, word):
    text = MINI.replace(f"  {word}", dup.split("\n")[0] + "\n  " + word, 1)
    e = err(text)
    assert e.message == f"duplicate '{word}' statement"
    assert e.line == at(text, word, 1)[0] and e.column == 3
    assert e.hint == f"it was first given on line {at(text, word)[0]}"


def test_duplicate_block_and_stem():
    e = err(MINI.replace("  stage s1", "  block bottleneck { op conv }\n  stage s1"))
    assert e.message == "duplicate 'block' statement"
    e = err(MINI.replace("  classes 10", "  classes 10\n  stem { conv 3x3 8 }\n  stem { conv 3x3 8 }"))
    assert e.message == "duplicate 'stem' statement" and e.line == 5


def test_duplicate_spec_statement_and_stage_attr():
    text = MINI.replace("    heads 2 | 4\n", "    heads 2 | 4\n    heads 8\n")
    e = err(text)
    assert e.message == "duplicate 'heads' statement" and (e.line, e.column) == at(text, "heads 8")
    text = MINI.replace("stage s2 blocks 2 width 32", "stage s2 blocks 2 width 32 blocks 3")
    e = err(text)
    assert e.message == "stage attribute 'blocks' given twice" and (e.line, e.column) == at(text, "blocks 3")


def test_override_index_out_of_range_and_twice():
    text = MINI.replace(
        "stage s2 blocks 2 width 32 stride 2", "stage s2 blocks 2 width 32 stride 2 { block 2 { op conv } }"
    )
    e = err(text)
    assert e.message == "stage 's2' has 2 blocks; there is no block 2"
    assert (e.line, e.column) == at(text, "2 { op")
    assert e.hint == "block indices run from 0 to 1"
    e = err(
        MINI.replace(
            "stage s2 blocks 2 width 32 stride 2",
            "stage s2 blocks 2 width 32 stride 2 { block 1 { op conv } block 1 { heads 2 } }",
        )
    )
    assert e.message == "block 1 of stage 's2' is overridden twice"


@pytest.mark.parametrize(
    "drop, word, example",
    [
        ("  input 3x32x32\n", "input", "input 3x224x224"),
        ("  classes 10\n", "classes", "classes 1000"),
    ],
)
def test_missing_input_or_classes(drop, word, example):
    e = err(MINI.replace(drop, ""))
    assert e.message == f"space 'mini' has no '{word}' statement"
    assert (e.line, e.column) == (1, 7)
    assert example in e.hint


def test_missing_stages():
    e = err(MINI.split("  stage s1")[0] + "}\n")
    assert e.message == "space 'mini' has no stages" and (e.line, e.column) == (1, 7)


def test_stage_missing_blocks_or_width():
    e = err(MINI.replace("stage s2 blocks 2 width 32", "stage s2 width 32"))
    assert e.message == "stage 's2' needs 'blocks'"
    e = err(MINI.replace("stage s2 blocks 2 width 32", "stage s2 blocks 2"))
    assert e.message == "stage 's2' needs 'width'"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("3x32x32", "3x32", "input must be CxHxW, got 3x32"),
        ("3x32x32", "3x0x32", "input dimensions must be >= 1"),
        ("classes 10", "classes 0", "classes must be >= 1, got 0"),
        ("width 0.5x | 1.0x", "width 0.0x", "width multiplier must be > 0"),
        ("width 0.5x | 1.0x", "width 0", "width must be >= 1, got 0"),
        ("heads 2 | 4", "heads 0", "heads must be >= 1, got 0"),
        ("heads 2 | 4", "heads 1..9 step 0", "step must be >= 1, got 0"),
        ("block bottleneck", "block basik", "unknown block type 'basik'"),
        ("stride 2\n}", "stride 0\n}", "stride must be >= 1, got 0"),
    ],
)
def test_bad_values(old, new, message):
    e = err(MINI.replace(old, new))
    assert e.message == message
    assert e.line >= 1 and e.column >= 1


def test_non_square_stem_kernel():
    e = err(MINI.replace("  classes 10", "  classes 10\n  stem { conv 3x5 8 }"))
    assert e.message == "kernel must be square KxK, got 3x5" and (e.line, e.column) == (4, 15)


def test_arch_structural_errors():
    e = err("arch a of b {\n  s1.0 axial(heads=8) width 8\n}")
    assert e.message.startswith("an arch block fixes heads") and (e.line, e.column) == (2, 8)
    assert "s1.0 axial width W heads 8" in e.hint
    e = err("arch a of b {\n  s1.0 conv width 8\n  s1.0 conv width 16\n}")
    assert e.message == "block s1.0 is given twice" and (e.line, e.column) == (3, 3)
    e = err("arch a of b {\n  s1.0 conv heads 8\n}")
    assert e.message == "block s1.0 needs a width"
    e = err("arch a of b {\n  s1.0 conv width 8 width 9\n}")
    assert e.message == "'width' given twice" and (e.line, e.column) == (2, 21)


def test_non_text_input():
    with pytest.raises(SpaceError, match="not text"):
        parse(b"space x {}")  # type: ignore[arg-type]

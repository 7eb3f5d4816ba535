"""IR -> resolved blocks, semantic errors, arch checks and the loader's file handling."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import at, raised

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.ir import Op, Space, Stage
from trionet_dsl.lang.parser import parse
from trionet_dsl.space.loader import compile_arch_text, compile_space_text, load_arch, load_space
from trionet_dsl.space.resolve import arch_choices, check_arch, conv_out, resolve, stem_padding

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "spaces"

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

CONV, LOCAL5, AXIAL = Op(kind="conv", kernel=3), Op(kind="local", span=5), Op(kind="axial")


def serr(text: str, file: str = "f.space") -> SpaceError:
    return raised(compile_space_text, text, file)


# ------------------------------------------------------------------ the shipped r50 space
@pytest.fixture(scope="module")
def r50():
    return load_space(SPACES / "trionet_r50.space")


def test_parsing_and_resolving_r50_works(r50):
    # timing-free: the benchmark lives in benchmarks/parse_speed.py
    assert r50.name == "trionet_r50" and len(r50.blocks) == 16


def test_r50_stem_geometry(r50):
    assert r50.stem_channels == 64
    assert r50.stem_hw == (56, 56)  # 224 -> 7x7/2 -> 112 -> 3x3/2 maxpool -> 56
    assert conv_out(224, 7, 2) == 112 and conv_out(112, 3, 2) == 56


def test_r50_blocks_shapes(r50):
    b = r50.by_key
    assert [k for k in b] == [f"s{s}.{i}" for s, n in ((1, 3), (2, 4), (3, 6), (4, 3)) for i in range(n)]
    s10 = b["s1.0"]
    assert (s10.in_channels, s10.out_channels, s10.stride, s10.in_hw, s10.out_hw) == (64, 256, 1, (56, 56), (56, 56))
    assert s10.has_projection  # 64 -> 256 channels
    assert not b["s1.1"].has_projection
    s20 = b["s2.0"]
    assert (s20.in_channels, s20.out_channels, s20.stride) == (256, 512, 2)
    assert (s20.in_hw, s20.out_hw) == ((56, 56), (28, 28))
    assert (b["s2.1"].in_channels, b["s2.1"].stride, b["s2.1"].in_hw) == (512, 1, (28, 28))
    assert (b["s3.0"].in_hw, b["s3.0"].out_hw, b["s3.0"].out_channels) == ((28, 28), (14, 14), 1024)
    assert (b["s4.0"].in_hw, b["s4.2"].out_hw, b["s4.2"].out_channels) == ((14, 14), (7, 7), 2048)
    assert r50.final_channels == 2048


def test_r50_widths_and_options(r50):
    b = r50.by_key
    assert b["s1.0"].widths == (32, 48, 64)
    assert b["s2.3"].widths == (64, 96, 128)
    assert b["s3.5"].widths == (128, 192, 256)
    assert b["s4.0"].widths == (256, 384, 512)
    opts = b["s2.0"].options
    assert [(o.op, o.heads) for o in opts] == [(CONV, ()), (Op(kind="local", span=7), (4, 8)), (AXIAL, (4, 8))]
    assert b["s2.0"].num_choices == 3 + 3 * 2 + 3 * 2 == 15
    assert len(b["s2.0"].choices) == 15
    assert b["s2.0"].choices[0].op == CONV and b["s2.0"].choices[0].heads is None
    assert b["s2.0"].max_width == 128


def test_r50_space_size_by_hand(r50):
    per_block = 3 * 1 + 3 * 2 + 3 * 2  # conv: 3 widths; local and axial: 3 widths x 2 heads
    assert per_block == 15
    assert r50.size == per_block**16 == 15**16 == 6568408355712890625


def test_small_space(small_space):
    assert small_space.stem_channels == 16 and small_space.stem_hw == (16, 16)
    assert [(b.key, b.in_channels, b.out_channels, b.in_hw, b.out_hw) for b in small_space.blocks] == [
        ("s1.0", 16, 32, (16, 16), (16, 16)),
        ("s1.1", 32, 32, (16, 16), (16, 16)),
        ("s2.0", 32, 64, (16, 16), (8, 8)),
        ("s2.1", 64, 64, (8, 8), (8, 8)),
        ("s3.0", 64, 128, (8, 8), (4, 4)),
        ("s3.1", 128, 128, (4, 4), (4, 4)),
    ]
    assert small_space.by_key["s1.0"].widths == (8, 12, 16)
    assert small_space.size == 15**6


# ------------------------------------------------------------------ resolution of levels and widths
LEVELS = """space lv {
  input 3x64x64
  classes 10
  stem { conv 3x3 8 stride 2; avgpool 3x3 stride 2 }
  block bottleneck expansion 4 {
    op conv | local(span=3) | axial(heads=1..2)
    width 1x
    heads 4 | 8
  }
  stage a blocks 3 width 16 stride 2 expansion 2 {
    width 4 | 0.5x | 12..16 step 4
    heads 2
    block 1 { op axial(span=9) | conv(kernel=5); width 16 }
    block 2 { heads 4 }
  }
  stage b blocks 1 width 32 stride 3
}
"""


def test_three_levels_of_defaults():
    rs = compile_space_text(LEVELS)
    a0, a1, a2, b0 = rs.blocks
    assert rs.stem_channels == 8 and rs.stem_hw == (16, 16)
    # stage-level width list (abs, multiplier of 16, range), heads 2 replace the space's heads
    assert a0.widths == (4, 8, 12, 16)
    assert [(o.op, o.heads) for o in a0.options] == [
        (CONV, ()),
        (Op(kind="local", span=3), (2,)),
        (AXIAL, (1, 2)),
    ]  # op's own heads win
    assert (a0.in_channels, a0.out_channels, a0.stride, a0.in_hw, a0.out_hw) == (8, 32, 2, (16, 16), (8, 8))
    # override replaces the ops and the width
    assert a1.widths == (16,)
    assert [(o.op, o.heads) for o in a1.options] == [(Op(kind="axial", span=9), (2,)), (Op(kind="conv", kernel=5), ())]
    assert (a1.in_channels, a1.stride) == (32, 1)
    assert a1.num_choices == 2
    # override of heads only
    assert [o.heads for o in a2.options] == [(), (4,), (1, 2)]
    assert a2.widths == (4, 8, 12, 16)
    # stage b: space defaults, ceil(8 / 3) = 3, expansion 4
    assert b0.widths == (32,)
    assert (b0.in_channels, b0.out_channels, b0.stride, b0.in_hw, b0.out_hw) == (32, 128, 3, (8, 8), (3, 3))
    assert [o.heads for o in b0.options] == [(), (4, 8), (1, 2)]
    assert rs.size == a0.num_choices * a1.num_choices * a2.num_choices * b0.num_choices


def test_multiplier_rounding():
    rs = compile_space_text(MINI.replace("width 0.5x | 1.0x", "width 0.3x | 1x").replace("heads 2 | 4", "heads 1"))
    # 0.3 * 16 = 4.8 -> 5 ; 0.3 * 32 = 9.6 -> 10
    assert rs.by_key["s1.0"].widths == (5, 16)
    assert rs.by_key["s2.0"].widths == (10, 32)


def test_heads_per_op_override_block_heads():
    rs = compile_space_text(
        MINI.replace("op conv(kernel=3) | local(span=5) | axial", "op local(span=5, heads=1|8) | axial")
    )
    assert [(o.op, o.heads) for o in rs.by_key["s1.0"].options] == [(LOCAL5, (1, 8)), (AXIAL, (2, 4))]


def test_block_without_ops_or_widths():
    text = MINI.replace("    op conv(kernel=3) | local(span=5) | axial\n", "")
    e = serr(text)
    assert e.message == "block s1.0 has no operator" and (e.line, e.column) == at(text, "stage s1")
    rs = compile_space_text(MINI.replace("    width 0.5x | 1.0x\n", ""))
    assert rs.by_key["s1.0"].widths == (16,) and rs.by_key["s2.1"].widths == (32,)


# ------------------------------------------------------------------ semantic errors
def test_heads_do_not_divide_width():
    text = MINI.replace("heads 2 | 4", "heads 2 | 3")
    e = serr(text)
    assert e.message == "block s1.0: 3 heads do not divide width 8 (local(span=5))"
    assert (e.line, e.column) == at(text, "heads 2 | 3")
    assert e.hint == "head counts dividing 8: 1, 2, 4, 8"


def test_heads_on_op_do_not_divide_width_points_at_the_op_argument():
    text = MINI.replace("local(span=5)", "local(span=5, heads=5)")
    e = serr(text)
    assert e.message == "block s1.0: 5 heads do not divide width 8 (local(span=5))"
    assert (e.line, e.column) == at(text, "heads=5")


def test_heads_error_in_a_stage_override_points_there():
    text = MINI.replace(
        "stage s2 blocks 2 width 32 stride 2",
        "stage s2 blocks 2 width 32 stride 2 {\n    block 1 { width 48; heads 5 }\n  }",
    )
    e = serr(text)
    assert e.message.startswith("block s2.1: 5 heads do not divide width 48")
    assert (e.line, e.column) == at(text, "heads 5")
    assert e.hint == "head counts dividing 48: 1, 2, 3, 4, 6, 8, 12, 16, 24, 48"


def test_width_multiplier_below_one_channel():
    text = MINI.replace("width 0.5x | 1.0x", "width 0.01x")
    e = serr(text)
    assert e.message == "block s1.0: width 0.01x of base width 16 is 0.16 < 1 channel"
    assert (e.line, e.column) == at(text, "width 0.01x")


def test_duplicate_widths_after_rounding():
    text = MINI.replace("width 0.5x | 1.0x", "width 0.5x | 0.52x")
    e = serr(text)
    assert e.message == "block s1.0: width choices resolve to 8 channels twice"
    assert (e.line, e.column) == at(text, "width 0.5x")
    assert "rounded" in e.hint


@pytest.mark.parametrize(
    "old, new, sig",
    [
        ("conv(kernel=3)", "conv(kernel=4)", "conv(kernel=4)"),
        ("local(span=5)", "local(span=6)", "local(span=6)"),
        ("| axial", "| axial(span=8)", "axial(span=8)"),
    ],
)
def test_even_kernel_or_span(old, new, sig):
    text = MINI.replace(old, new)
    e = serr(text)
    assert e.message == f"block s1.0: {sig} has an even size"
    assert (e.line, e.column) == at(text, sig)
    assert e.hint == "kernels and spans must be odd"


def test_attention_without_heads():
    text = MINI.replace("    heads 2 | 4\n", "")
    e = serr(text)
    assert e.message == "block s1.0: attention operator local(span=5) has no head choices"
    assert (e.line, e.column) == at(text, "local(span=5)")
    assert "heads 4 | 8" in e.hint


def test_even_stem_kernels_are_padded_by_k_minus_1_over_2():
    # (k - 1) // 2, as torchvision: 2x2/2 pooling (pad 0) halves exactly, a 4x4/2 conv (pad 1) too
    text = MINI.replace(
        "  classes 10", "  classes 10\n  stem { conv 4x4 8 stride 2; avgpool 2x2 stride 2; maxpool 2x2 stride 2 }"
    )
    rs = compile_space_text(text)
    assert [s.padding for s in rs.stem] == [1, 0, 0]
    assert [s.out_shape for s in rs.stem] == [(8, 16, 16), (8, 8, 8), (8, 4, 4)]
    assert rs.stem_channels == 8 and rs.stem_hw == (4, 4) and rs.blocks[0].in_hw == (4, 4)
    assert [stem_padding(k) for k in (1, 2, 3, 4, 5, 7)] == [0, 0, 1, 1, 2, 3]
    assert conv_out(35, 4, 2) == 17 and conv_out(17, 2, 2) == 8 and conv_out(7, 2, 1) == 6
    # odd kernels with padding k//2 never shrink below one pixel: 1x1 stays 1x1
    tiny = MINI.replace("3x32x32", "3x1x1").replace("heads 2 | 4", "heads 1")
    rs = compile_space_text(
        tiny.replace("  classes 10", "  classes 10\n  stem { conv 3x3 8 stride 2; maxpool 3x3 stride 2 }")
    )
    assert rs.stem_hw == (1, 1) and rs.blocks[-1].out_hw == (1, 1)
    # an even kernel can: a located error at the layer
    text = tiny.replace("  classes 10", "  classes 10\n  stem { conv 3x3 8\n    avgpool 2x2 stride 2 }")
    e = serr(text)
    assert e.message == "the stem shrinks the input below 1 pixel" and (e.line, e.column) == at(text, "avgpool")


def test_resolve_checks_ir_built_in_python():
    sp = parse(MINI)
    assert isinstance(sp, Space)
    dup = sp.model_copy(update={"stages": (sp.stages[0], sp.stages[0])})
    with pytest.raises(SpaceError, match="duplicate stage name 's1'"):
        resolve(dup)
    huge = sp.model_copy(update={"stages": (Stage(name="s", blocks=10**9, width=16),)})
    with pytest.raises(SpaceError, match="more than"):
        resolve(huge)
    zero = sp.model_copy(update={"stages": (Stage(name="s", blocks=1, width=16, stride=0),)})
    with pytest.raises(SpaceError, match="must be >= 1"):
        resolve(zero)


# ------------------------------------------------------------------ arch checks
ARCH_OK = """arch a of mini {
  s1.0 conv(kernel=3) width 8
  s1.1 local(span=5) width 16 heads 4
  s2.0 axial width 32 heads 2
  s2.1 axial width 16 heads 4
}
"""


@pytest.fixture(scope="module")
def mini():
    return compile_space_text(MINI, "mini.space")


def aerr(text: str, space) -> SpaceError:
    with pytest.raises(SpaceError) as info:
        compile_arch_text(text, "a.arch", space)
    return info.value


def test_arch_ok_and_choices(mini):
    la = compile_arch_text(ARCH_OK, "a.arch", mini)
    assert la.space is mini and la.path == "a.arch"
    ch = arch_choices(mini, la.arch)
    assert [(c.op, c.width, c.heads) for c in ch] == [(CONV, 8, None), (LOCAL5, 16, 4), (AXIAL, 32, 2), (AXIAL, 16, 4)]


def test_arch_blocks_are_put_in_space_order_and_fixed_blocks_filled_in():
    sp = MINI.replace(
        "stage s2 blocks 2 width 32 stride 2", "stage s2 blocks 2 width 32 stride 2 { block 1 { op conv; width 32 } }"
    )
    rs = compile_space_text(sp)
    text = "arch a of mini {\n  s2.0 axial width 32 heads 2\n  s1.1 conv width 8\n  s1.0 conv width 8\n}\n"
    arch = compile_arch_text(text, space=rs).arch
    assert [b.key for b in arch.blocks] == ["s1.0", "s1.1", "s2.0", "s2.1"]
    assert arch.block("s2.1").op == CONV and arch.block("s2.1").width == 32 and arch.block("s2.1").heads is None


def test_arch_block_not_in_space(mini):
    text = ARCH_OK.replace("s2.1 axial", "s2.1 axial").replace("  s1.0 conv", "  s3.0 conv")
    e = aerr(text, mini)
    assert e.message == "space 'mini' has no block s3.0"
    assert (e.line, e.column) == at(text, "s3.0")
    assert "did you mean" in e.hint


def test_arch_op_not_a_choice(mini):
    text = ARCH_OK.replace("conv(kernel=3) width 8", "conv(kernel=5) width 8")
    e = aerr(text, mini)
    assert e.message == "block s1.0: conv(kernel=5) is not a choice of this block"
    assert (e.line, e.column) == at(text, "conv(kernel=5)")
    assert e.hint == "choices: conv(kernel=3) | local(span=5) | axial"


def test_arch_width_not_a_choice(mini):
    text = ARCH_OK.replace("s2.0 axial width 32", "s2.0 axial width 24")
    e = aerr(text, mini)
    assert e.message == "block s2.0: width 24 is not a choice of this block"
    assert (e.line, e.column) == at(text, "width 24")
    assert e.hint == "widths: 16, 32"


def test_arch_heads_not_a_choice_or_missing(mini):
    text = ARCH_OK.replace("heads 2", "heads 8")
    e = aerr(text, mini)
    assert e.message == "block s2.0: 8 heads is not a choice of axial"
    assert (e.line, e.column) == at(text, "heads 8")
    assert e.hint == "heads: 2, 4"
    text = ARCH_OK.replace("s1.1 local(span=5) width 16 heads 4", "s1.1 local(span=5) width 16")
    e = aerr(text, mini)
    assert e.message == "block s1.1: local(span=5) needs 'heads N'"
    assert (e.line, e.column) == at(text, "s1.1")


def test_arch_conv_with_heads(mini):
    text = ARCH_OK.replace("conv(kernel=3) width 8", "conv(kernel=3) width 8 heads 2")
    e = aerr(text, mini)
    assert e.message == "block s1.0: conv(kernel=3) takes no heads"
    assert (e.line, e.column) == at(text, "heads 2")


def test_arch_missing_searchable_block(mini):
    text = ARCH_OK.replace("  s2.0 axial width 32 heads 2\n", "")
    e = aerr(text, mini)
    assert e.message == "arch 'a' does not fix block s2.0"
    assert (e.line, e.column) == at(text, "}")
    assert "s2.0 conv(kernel=3) width 32" in e.hint
    e = aerr("arch a of mini {\n}\n", mini)
    assert e.message == "arch 'a' does not fix blocks s1.0, s1.1, s2.0, s2.1"


def test_arch_wrong_space_name(mini):
    text = ARCH_OK.replace("of mini", "of other")
    e = aerr(text, mini)
    assert e.message == "arch 'a' is of space 'other', not 'mini'"
    assert (e.line, e.column) == at(text, "a of")


def test_arch_space_file_not_found(tmp_path):
    f = tmp_path / "x.arch"
    f.write_text(ARCH_OK.replace("of mini", "of no_such_space"))
    with pytest.raises(SpaceError) as info:
        load_arch(f)
    assert info.value.message == "cannot find space 'no_such_space'"
    assert "--space" in info.value.hint


def test_arch_finds_space_next_to_it(tmp_path):
    (tmp_path / "mini.space").write_text(MINI)
    (tmp_path / "archs").mkdir()
    f = tmp_path / "archs" / "a.arch"
    f.write_text(ARCH_OK)
    la = load_arch(f)
    assert la.space.name == "mini" and la.arch.block("s1.1").heads == 4


def test_space_file_not_found_and_kind_mismatch(tmp_path):
    with pytest.raises(SpaceError, match="cannot read"):
        load_space(tmp_path / "nope.space")
    with pytest.raises(SpaceError, match="holds an arch, not a space"):
        compile_space_text(ARCH_OK)
    with pytest.raises(SpaceError, match="holds a space, not an arch"):
        compile_arch_text(MINI)


@pytest.mark.parametrize(
    "name, op, width, heads",
    [
        ("resnet50", Op(kind="conv", kernel=3), None, None),
        ("sasa_r50", Op(kind="local", span=7), None, 8),
        ("axial_r50", Op(kind="axial"), None, 8),
    ],
)
def test_shipped_archs_check(name, op, width, heads, r50):
    la = load_arch(SPACES / "archs" / f"{name}.arch")
    assert la.space.name == "trionet_r50"
    for b, rb in zip(la.arch.blocks, r50.blocks, strict=True):
        assert b.key == rb.key and b.op == op and b.width == rb.max_width and b.heads == heads


def test_check_arch_without_source_map(r50):
    arch = parse((SPACES / "archs" / "resnet50.arch").read_text())
    bad = arch.model_copy(update={"blocks": arch.blocks[:-1]})
    with pytest.raises(SpaceError, match=r"does not fix block s4\.2"):
        check_arch(r50, bad)

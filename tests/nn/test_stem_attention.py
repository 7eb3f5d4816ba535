"""Attention in the stem: parse/emit, located errors, exact params, supernet == extracted."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from helpers import raised
from torch import nn

from trionet_dsl import load_arch
from trionet_dsl.lang.emit import emit
from trionet_dsl.lang.ir import StemAttention
from trionet_dsl.lang.parser import parse
from trionet_dsl.nn.network import build
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.cost import CostModel, arch_cost, supernet_params
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.sampling import sample

SPACES = Path(__file__).resolve().parents[2] / "spaces"

TINY = """
space tiny {
  input 3x16x16
  classes 5
  stem {
    local(span=5) width 8 heads 2 stride 2
  }
  block bottleneck expansion 2 {
    op conv(kernel=3) | local(span=3)
    width 0.5x | 1.0x
    heads 2
  }
  stage s1 blocks 2 width 8
}
"""


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_stem_attention_parses_and_round_trips():
    sp = parse(TINY)
    layer = sp.stem[0]
    assert isinstance(layer, StemAttention)
    assert (layer.op.span, layer.channels, layer.heads, layer.stride) == (5, 8, 2, 2)
    assert parse(emit(sp)) == sp
    rs = compile_space_text(TINY)
    assert rs.stem[0].out_shape == (8, 8, 8) and rs.blocks[0].in_channels == 8


def test_sasa_full_attention_r50_params():
    la = load_arch(SPACES / "archs" / "sasa_full_r50.arch")
    cost = arch_cost(la.space, la.arch)
    assert cost.params == _params(build(la.space, la.arch)) == 18_030_248
    assert abs(cost.params - 18.0e6) / 18.0e6 < 0.002  # the paper's 18.0 M
    # the stem alone: q/k/v 1x1 projections 3 -> 64, 7 relative offsets x 64 channels, BN (independent formula)
    sasa_conv_stem = load_arch(SPACES / "archs" / "sasa_r50.arch")
    stem_delta = (3 * 3 * 64 + 64 * 7 + 2 * 64) - (3 * 64 * 49 + 2 * 64)
    assert cost.params - arch_cost(sasa_conv_stem.space, sasa_conv_stem.arch).params == stem_delta


def test_tiny_supernet_with_attention_stem_equals_extracted():
    rs = compile_space_text(TINY)
    net = Supernet(rs, seed=0).train()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
        net.activate(sample(rs, random.Random(0)))(torch.randn(4, 3, 16, 16))
    net.eval()
    assert supernet_params(rs) == _params(net)
    for seed in range(4):
        arch = sample(rs, random.Random(seed))
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = net.activate(arch)(x)
            model = extract(net, arch).eval()
            torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-4)
        assert _params(model) == CostModel(rs)(arch)[0]


@pytest.mark.parametrize(
    "old, new, needle, words",
    [
        ("local(span=5) width 8 heads 2 stride 2", "local(span=5) width 8 heads 2 stride 7", "7", "cannot do stride 7"),
        ("local(span=5) width 8 heads 2 stride 2", "axial width 8 heads 2", "axial", "is local(span=K)"),
        ("local(span=5) width 8 heads 2 stride 2", "local(span=5) width 8 heads 3", "3", "do not divide"),
    ],
)
def test_stem_attention_errors_are_located(old, new, needle, words):
    text = TINY.replace(old, new)
    e = raised(parse, text)
    assert words in e.message and e.hint
    pos = text.index(new) + new.rindex(needle)  # the offending token: the last `needle` of the layer
    assert (e.line, e.column) == (text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos))

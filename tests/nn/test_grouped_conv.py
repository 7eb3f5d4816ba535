"""Grouped convolution: ResNeXt-50's exact count, the group-wise width slicing, supernet == extracted."""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F
from helpers import at, raised
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from trionet_dsl import load_arch
from trionet_dsl.nn.network import build
from trionet_dsl.nn.ops.sliced import SuperConv2d
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.cost import CostModel, arch_cost, supernet_params
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.sampling import sample

SPACES = Path(__file__).resolve().parents[2] / "spaces"

GROUPED = """space grouped {
  input 3x16x16
  classes 5
  stem {
    conv 3x3 8 stride 1
  }
  block bottleneck expansion 2 {
    op conv(kernel=3, groups=4) | conv(kernel=3, groups=2) | conv(kernel=3) | local(span=3)
    width 8 | 16 | 24
    heads 2 | 4
  }
  stage s1 blocks 2 width 16 stride 1
  stage s2 blocks 1 width 16 stride 2
}
"""


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _plain_resnext50_params() -> int:
    """ResNeXt-50 32x4d built by hand in plain PyTorch (torchvision's layout, written out here)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)]
    cin = 64
    for blocks, width in ((3, 128), (4, 256), (6, 512), (3, 1024)):
        for i in range(blocks):
            out = 2 * width
            layers += [
                nn.Conv2d(cin, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.Conv2d(width, width, 3, 1, 1, groups=32, bias=False),
                nn.BatchNorm2d(width),
                nn.Conv2d(width, out, 1, bias=False),
                nn.BatchNorm2d(out),
            ]
            if i == 0:
                layers += [nn.Conv2d(cin, out, 1, bias=False), nn.BatchNorm2d(out)]
            cin = out
    layers.append(nn.Linear(2048, 1000))
    return _params(nn.Sequential(*layers))


def test_resnext50_is_torchvisions_25_028_904():
    la = load_arch(SPACES / "archs" / "resnext50_32x4d.arch")
    assert arch_cost(la.space, la.arch).params == 25_028_904  # torchvision's published count
    assert _params(build(la.space, la.arch)) == 25_028_904
    assert _plain_resnext50_params() == 25_028_904


def test_width_w_uses_the_first_w_over_g_channels_of_each_group():
    torch.manual_seed(0)
    conv = SuperConv2d(24, 24, 3, groups=4)
    x = torch.randn(2, 16, 7, 7)
    y = conv(x, 16)
    # reference: group g of width 16 (d=4) is output rows g*6 .. g*6+3 of the stored 4 x 6 grid,
    # reading input channels g*4 .. g*4+3 through the first 4 of that group's 6 weight columns
    ref = torch.cat(
        [F.conv2d(x[:, 4 * g : 4 * g + 4], conv.weight[6 * g : 6 * g + 4, :4], padding=1) for g in range(4)], 1
    )
    torch.testing.assert_close(y, ref)
    assert conv.output_index(16).tolist() == [6 * g + j for g in range(4) for j in range(4)]
    assert conv.output_index(24) is None
    plain = conv.extract(16, in_channels=16)
    assert plain.groups == 4 and _params(plain) == 16 * 4 * 9
    torch.testing.assert_close(plain(x), y)


def test_grouped_supernet_param_formula():
    rs = compile_space_text(GROUPED)
    assert supernet_params(rs) == _params(Supernet(rs))
    assert supernet_params(rs, "prefix") == _params(Supernet(rs, "prefix"))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_grouped_extracted_model_equals_supernet(seed):
    rs = compile_space_text(GROUPED)
    torch.manual_seed(seed)
    net = Supernet(rs, seed=seed)
    with torch.no_grad():
        for m in net.modules():  # non-trivial BN so the equality means something
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    arch = sample(rs, random.Random(seed))
    net.activate(arch).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = net(x)
        model = extract(net, arch).eval()
        out = model(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    assert _params(model) == CostModel(rs)(arch)[0] == _params(build(rs, arch))


def test_fvcore_counts_grouped_conv_macs():
    import pytest

    fvcore = pytest.importorskip("fvcore.nn")
    rs = compile_space_text(GROUPED.replace(" | conv(kernel=3, groups=2) | conv(kernel=3) | local(span=3)", ""))
    arch = sample(rs, random.Random(3))
    model = build(rs, arch).eval()
    counted = fvcore.FlopCountAnalysis(model, torch.zeros(1, 3, 16, 16))
    counted.unsupported_ops_warnings(False)
    by_op = counted.by_operator()
    assert by_op["conv"] + by_op["linear"] == CostModel(rs)(arch)[1]


def test_groups_not_dividing_a_width_is_located_with_a_hint():
    text = GROUPED.replace("width 8 | 16 | 24", "width 8 | 12 | 24").replace("groups=4", "groups=8")
    e = raised(compile_space_text, text, "g.space")
    assert e.message == "block s1.0: conv(kernel=3, groups=8): groups=8 does not divide 12 channels"
    assert (e.line, e.column) == at(text, "conv(kernel=3, groups=8)")
    assert e.hint is not None and "divisible by 8 (e.g. 8, 16)" in e.hint
    e = raised(compile_space_text, GROUPED.replace("groups=4", "groups=0"), "g.space")
    assert "groups must be >= 1" in e.message

"""Basic blocks (torchvision's BasicBlock, any operator) and grouped convolution (ResNeXt): exact
counts against torchvision's published ones and a hand-written ResNet-18, sliced grouped convs
against a per-group loop, supernet == extracted model, located errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import at, raised
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from trionet_dsl import load_arch
from trionet_dsl.nn.network import BasicBlock, build
from trionet_dsl.nn.ops.sliced import SuperConv2d
from trionet_dsl.nn.supernet import SuperBasic, Supernet, extract
from trionet_dsl.space.cost import CostModel, arch_cost, supernet_params
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.sampling import sample

SPACES = Path(__file__).resolve().parents[2] / "spaces"


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------- a hand-written ResNet-18 (reference)
class _RefBasic(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.down = None
        if stride != 1 or cin != planes:
            self.down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class _RefResNet(nn.Module):
    def __init__(self, layers: tuple[int, ...], classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        blocks, cin = [], 64
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            for j in range(n):
                blocks.append(_RefBasic(cin, planes, 2 if i > 0 and j == 0 else 1))
                cin = planes
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize(
    "name, layers, expected", [("resnet18", (2, 2, 2, 2), 11_689_512), ("resnet34", (3, 4, 6, 3), 21_797_672)]
)
def test_resnet18_34_are_torchvisions(name, layers, expected):
    la = load_arch(SPACES / "archs" / f"{name}.arch")
    assert arch_cost(la.space, la.arch).params == expected
    model = build(la.space, la.arch, seed=0).eval()
    ref = _RefResNet(layers).eval()
    assert _params(model) == _params(ref) == expected
    # same tensors in the same order: load ours into the reference, and the outputs agree
    ours = list(model.state_dict().values())
    theirs = ref.state_dict()
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in theirs.values()]
    if name == "resnet18":
        with torch.no_grad():
            for m in model.modules():  # non-trivial BN so every layer matters
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.running_mean.uniform_(-0.1, 0.1)
            ref.load_state_dict(dict(zip(theirs, model.state_dict().values(), strict=True)))
            x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
            torch.testing.assert_close(model(x), ref(x))


def test_resnet18_flops_agree_with_fvcore():
    fvcore = pytest.importorskip("fvcore.nn")
    la = load_arch(SPACES / "archs" / "resnet18.arch")
    counted = fvcore.FlopCountAnalysis(_RefResNet((2, 2, 2, 2)).eval(), torch.zeros(1, 3, 224, 224))
    counted.unsupported_ops_warnings(False)
    counted.uncalled_modules_warnings(False)
    by_op = counted.by_operator()
    assert arch_cost(la.space, la.arch).flops == by_op["conv"] + by_op["linear"] == 1_814_073_344


def test_resnext50_32x4d_is_torchvisions():
    la = load_arch(SPACES / "archs" / "resnext50_32x4d.arch")
    assert arch_cost(la.space, la.arch).params == 25_028_904
    model = build(la.space, la.arch)
    assert _params(model) == 25_028_904
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 16 and all(c.groups == 32 for c in convs)
    assert [c.in_channels // 32 for c in convs[:3]] == [4, 4, 4]  # 32x4d: 4 channels per group in s1


# ------------------------------------------------------------- grouped width slicing
@pytest.mark.parametrize("cin, cout, groups", [(8, 12, 4), (12, 8, 4), (16, 16, 8), (6, 6, 1)])
def test_grouped_sub_conv_is_the_first_channels_of_every_group(cin, cout, groups):
    torch.manual_seed(0)
    sup = SuperConv2d(24, 24, 3, 1, groups)
    x = torch.randn(2, cin, 5, 5)
    out = sup(x, cout)
    # reference: one plain conv per group, over that group's block of inputs, with the filters of
    # the super conv's group g that come first (rows g*24/G ..), their first cin/G input columns
    per_in, per_out, big = cin // groups, cout // groups, 24 // groups
    parts = []
    for g in range(groups):
        w = sup.weight[g * big : g * big + per_out, :per_in]
        parts.append(F.conv2d(x[:, g * per_in : (g + 1) * per_in], w, padding=1))
    torch.testing.assert_close(out, torch.cat(parts, 1))
    idx = sup.output_index(cout)
    expected = [g * big + i for g in range(groups) for i in range(per_out)]
    assert (list(range(24)) if idx is None else idx.tolist())[: len(expected)] == expected
    conv = sup.extract(cout, in_channels=cin)
    assert conv.groups == groups and _params(conv) == cout * per_in * 9
    torch.testing.assert_close(conv(x), out)


MIXED = """space mixed {
  input 3x16x16
  classes 5
  stem {
    conv 3x3 16
  }
  block %s {
    op conv(kernel=3) | conv(kernel=3, groups=4) | local(span=3) | axial
    width 8 | 16 | 24
    heads 2 | 4
  }
  stage s1 blocks 2 width 16 stride 1
  stage s2 blocks 1 width 24 stride 2
}
"""


def _net(kind: str, sharing: str):
    rs = compile_space_text(MIXED % kind)
    net = Supernet(rs, sharing=sharing, seed=0)
    net.train()
    rng = random.Random(0)
    with torch.no_grad():
        for m in net.modules():  # undo the zeroed last BNs, so no block is its shortcut
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        for _ in range(4):
            net.activate(sample(rs, rng))
            net(torch.randn(4, 3, 16, 16))
    return rs, net.eval()


NETS = {(k, s): _net(k, s) for k in ("basic expansion 1", "bottleneck expansion 2") for s in ("multihead", "prefix")}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), key=st.sampled_from(sorted(NETS)))
def test_extracted_equals_supernet_for_basic_and_grouped(seed, key):
    rs, net = NETS[key]
    arch = sample(rs, random.Random(seed))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = net.activate(arch)(x)
        model = extract(net, arch).eval()
        torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-4)
    params = CostModel(rs)(arch)[0]
    assert _params(model) == _params(build(rs, arch)) == params


@pytest.mark.parametrize("key", sorted(NETS))
def test_supernet_params_formula_counts_basic_and_grouped(key):
    rs, net = NETS[key]
    assert supernet_params(rs, net.sharing) == _params(net)
    if key[0].startswith("basic"):
        assert all(isinstance(b, SuperBasic) for b in net.blocks)


def test_basic_block_layers_and_costs_by_hand():
    """s2.0 of MIXED as basic: 16 -> w (stride 2) -> 24, a projection; counted by hand."""
    rs = compile_space_text(MIXED % "basic expansion 1")
    b = rs.by_key["s2.0"]
    assert (b.kind, b.in_channels, b.out_channels, b.stride, b.in_hw, b.out_hw) == (
        "basic",
        16,
        24,
        2,
        (16, 16),
        (8, 8),
    )
    cm = CostModel(rs)
    table = cm.tables[2]
    w = 8
    conv = 16 * w * 9 + w * 24 * 9 + 2 * w + 2 * 24 + 16 * 24 + 2 * 24
    assert table[("conv(kernel=3)", w, None)][0] == conv
    grouped = 16 * (w // 4) * 9 + 24 * (w // 4) * 9 + 2 * w + 2 * 24 + 16 * 24 + 2 * 24
    assert table[("conv(kernel=3, groups=4)", w, None)][0] == grouped
    macs = 8 * 8 * (16 // 4) * w * 9 + 8 * 8 * (w // 4) * 24 * 9 + 8 * 8 * 16 * 24
    assert table[("conv(kernel=3, groups=4)", w, None)][1] == macs
    # local attention on both layers: 3 C_in w + w K, for 16 -> 8 and 8 -> 24
    local = (3 * 16 * w + w * 3) + (3 * w * 24 + 24 * 3) + 2 * w + 2 * 24 + 16 * 24 + 2 * 24
    assert table[("local(span=3)", w, 2)][0] == local
    arch = sample(rs, random.Random(1))
    model = build(rs, arch)
    assert all(isinstance(m, BasicBlock) for m in model.blocks)


def test_grouped_flops_agree_with_fvcore():
    fvcore = pytest.importorskip("fvcore.nn")
    for kind in ("basic expansion 1", "bottleneck expansion 2"):
        rs = compile_space_text(MIXED % kind)
        from trionet_dsl.space.sampling import uniform_op

        arch = uniform_op(rs, "conv", largest=False)
        arch = arch.model_copy(
            update={"blocks": tuple(b.model_copy(update={"op": rs.blocks[0].options[1].op}) for b in arch.blocks)}
        )
        model = build(rs, arch).eval()
        counted = fvcore.FlopCountAnalysis(model, torch.zeros(1, 3, 16, 16))
        counted.unsupported_ops_warnings(False)
        counted.uncalled_modules_warnings(False)
        by_op = counted.by_operator()
        assert by_op["conv"] + by_op["linear"] == CostModel(rs)(arch)[1]


# ------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "old, new, message, hint",
    [
        ("width 8 | 16 | 24", "width 8 | 18 | 24", "groups=4 does not divide 18 channels", "(e.g. 16, 20)"),
        ("conv(kernel=3, groups=4)", "conv(kernel=3, groups=5)", "groups=5 does not divide 8 channels", "by 5"),
    ],
)
def test_groups_not_dividing_a_width_is_a_located_error(old, new, message, hint):
    text = (MIXED % "bottleneck expansion 2").replace(old, new).replace("heads 2 | 4", "heads 2")
    e = raised(compile_space_text, text)
    assert message in e.message and e.message.startswith("block s1.0: conv(kernel=3, groups=")
    assert e.hint and hint in e.hint
    assert (e.line, e.column) == at(text, "conv(kernel=3, groups=")  # the grouped conv in the op statement


def test_basic_block_channels_must_fit_groups_and_heads():
    # a basic block's first layer reads the block's input: 3 stem channels do not split into 4 groups
    text = (MIXED % "basic expansion 1").replace("conv 3x3 16", "conv 3x3 18")
    e = raised(compile_space_text, text)
    assert "groups=4 does not divide 18 channels" in e.message
    # the second layer's width is the block's output: 4 heads do not divide 18 = 18 x 1
    text = (MIXED % "basic expansion 1").replace("width 16 stride 1", "width 18 stride 1")
    text = text.replace("conv(kernel=3, groups=4) | ", "").replace("width 8 | 16 | 24", "width 8 | 16")
    e = raised(compile_space_text, text)
    assert "do not divide the block's 18 output channels" in e.message and e.hint and "18" in e.hint


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_basic_and_grouped_archs_export(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from trionet_dsl.app.export import export

    (tmp_path / "mixed.space").write_text(MIXED % "basic expansion 1")
    (tmp_path / "a.arch").write_text(
        "arch a of mixed {\n  s1.0 conv(kernel=3, groups=4) width 16\n  s1.1 local(span=3) width 8 heads 2\n"
        "  s2.0 axial width 24 heads 4\n}\n"
    )
    la = load_arch(tmp_path / "a.arch")
    model = build(la.space, la.arch, seed=0).eval()
    res = export(model, la, tmp_path / f"a.{fmt}", fmt)
    assert res.params == _params(model) == arch_cost(la.space, la.arch).params
    assert res.max_abs_diff < 1e-4


def test_basic_block_graph_and_diff():
    from trionet_dsl.space.diff import diff_spaces
    from trionet_dsl.space.graph import build_graph, space_size, stage_summaries

    la = load_arch(SPACES / "archs" / "resnet18.arch")
    g = build_graph(la.space, la.arch)
    assert "s1.0.reduce" not in g and "s1.0.expand" not in g
    assert g.nodes["s2.0.op"]["in_shape"] == [64, 56, 56] and g.nodes["s2.0.op"]["out_shape"] == [128, 28, 28]
    assert g.nodes["s2.0.op2"]["in_shape"] == [128, 28, 28] == g.nodes["s2.0.op2"]["out_shape"]
    assert list(g.successors("s2.0.op")) == ["s2.0.op2"] and "s2.0.proj" in g and "s2.1.proj" not in g
    assert [(s.name, s.in_shape, s.out_shape) for s in stage_summaries(g)][1] == ("s2", (64, 56, 56), (128, 28, 28))
    sg = build_graph(la.space)
    assert space_size(sg) == la.space.size == 15**8
    assert sg.nodes["s1.0.op"]["in_shape"] == [64, 56, 56] and sg.nodes["s1.0.op2"]["in_shape"] == [64, 56, 56]
    basic = compile_space_text(MIXED % "basic expansion 1")
    bottleneck = compile_space_text(MIXED % "bottleneck expansion 1")
    d = diff_spaces(basic, bottleneck)
    assert "block basic -> bottleneck" in d.header and all(r.status == "changed" for r in d.blocks)
    assert all(r.status == "same" for r in diff_spaces(basic, basic).blocks)

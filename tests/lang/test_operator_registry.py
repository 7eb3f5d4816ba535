"""The operator registry: a toy operator registered from outside the package runs end to end
(parse -> resolve -> costs -> graph -> supernet -> extract), unknown operators are errors
everywhere, and space/ stays torch-free."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import at, raised
from pydantic import ValidationError
from torch import nn

from trionet_dsl import CostModel, Supernet, build, emit, extract, parse
from trionet_dsl.lang.ir import Op
from trionet_dsl.lang.operators import REGISTRY, Arg, Operator, operator
from trionet_dsl.space.cost import supernet_params
from trionet_dsl.space.graph import build_graph, space_size
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.sampling import sample, uniform_op


# ------------------------------------------------------------------ a depthwise conv, defined here only
def dw_params(op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int]) -> int:
    return width * op.require("kernel") ** 2


def dw_macs(op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int) -> int:
    oh, ow = -(-in_hw[0] // stride), -(-in_hw[1] // stride)
    return oh * ow * width * op.require("kernel") ** 2


def dw_super_params(
    op: Op, *, widths: tuple[int, ...], heads: tuple[int, ...], in_hw: tuple[int, int], sharing: str
) -> int:
    return max(widths) * op.require("kernel") ** 2


def dw_check(op: Op, *, widths: tuple[int, ...], heads: tuple[int, ...]) -> str | None:
    k = op.require("kernel")
    return f"kernel {k} is larger than the 7 a depthwise conv here allows" if k > 7 else None


def dw_plain(op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int) -> nn.Module:
    k = op.require("kernel")
    return nn.Conv2d(width, width, k, stride, k // 2, groups=width, bias=False)


class SuperDWConv(nn.Module):
    """Every width of a block's depthwise conv: the leading ``width`` filters."""

    def __init__(self, widths: tuple[int, ...], kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.weight = nn.Parameter(torch.randn(max(widths), 1, kernel, kernel) * 0.3)

    def forward(self, x: torch.Tensor, width: int, heads: int | None = None) -> torch.Tensor:
        return F.conv2d(x, self.weight[:width], None, self.stride, self.kernel // 2, 1, width)

    @property
    def output_rows(self) -> int:
        return self.weight.shape[0]

    def output_index(self, width: int, heads: int | None = None) -> None:
        return None

    def extract(self, width: int, heads: int | None = None) -> nn.Conv2d:
        conv = nn.Conv2d(width, width, self.kernel, self.stride, self.kernel // 2, groups=width, bias=False)
        with torch.no_grad():
            conv.weight.copy_(self.weight[:width])
        return conv


def dw_super(
    op: Op,
    *,
    in_max: int,
    widths: tuple[int, ...],
    heads: tuple[int, ...],
    in_hw: tuple[int, int],
    stride: int,
    sharing: str,
) -> nn.Module:
    return SuperDWConv(widths, op.require("kernel"), stride)


DWCONV = Operator(
    "dwconv",
    args=(Arg("kernel", 3, odd=True),),
    params=dw_params,
    macs=dw_macs,
    super_params=dw_super_params,
    plain_module=dw_plain,
    super_module=dw_super,
    check=dw_check,
    help="depthwise K x K conv",
)

TOY = """\
space toy {
  input 3x16x16
  classes 5
  stem {
    conv 3x3 8 stride 1
  }
  block bottleneck expansion 2 {
    op conv(kernel=3) | dwconv(kernel=5) | local(span=3)
    width 4 | 8
    heads 2
  }
  stage s1 blocks 2 width 8 stride 1
  stage s2 blocks 1 width 8 stride 2 {
    op dwconv | axial
  }
}
"""


@pytest.fixture()
def dwconv():
    with REGISTRY.extended(DWCONV):
        yield DWCONV


def test_toy_operator_end_to_end(dwconv):
    sp = parse(TOY)
    ops = sp.block.spec.ops
    assert ops[1] == Op(kind="dwconv", kernel=5) and ops[1].signature == "dwconv(kernel=5)"
    assert not ops[1].is_attention
    assert sp.stages[1].spec.ops[0] == Op(kind="dwconv", kernel=3)  # the declared default
    text = emit(sp)
    assert "op conv(kernel=3) | dwconv(kernel=5) | local(span=3)" in text
    assert "op dwconv(kernel=3) | axial" in text
    assert parse(text) == sp

    rs = compile_space_text(TOY)
    assert [o.op.signature for o in rs.blocks[0].options] == ["conv(kernel=3)", "dwconv(kernel=5)", "local(span=3)"]
    assert rs.blocks[0].options[1].heads == ()  # no heads: not an attention operator
    g = build_graph(rs)
    assert "dwconv(kernel=5)" in g.nodes["s1.0.op"]["ops"]
    assert space_size(g) == rs.size == (2 + 2 + 2) ** 2 * (2 + 2)
    cm = CostModel(rs)
    assert cm.extremes()["params_min"] < cm.extremes()["params_max"]

    torch.manual_seed(0)
    net = Supernet(rs, seed=0)
    assert supernet_params(rs) == sum(p.numel() for p in net.parameters())
    archs = [uniform_op(rs, "dwconv"), uniform_op(rs, "dwconv", largest=False)]
    archs += [sample(rs, random.Random(seed)) for seed in range(6)]
    assert any(b.op.kind == "dwconv" for a in archs[2:] for b in a.blocks)
    x = torch.randn(2, 3, 16, 16)
    for arch in archs:
        net.activate(arch).eval()
        with torch.no_grad():
            ref = net(x)
            model = extract(net, arch).eval()
            out = model(x)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
        params, _ = cm(arch)
        assert sum(p.numel() for p in model.parameters()) == params
        assert sum(p.numel() for p in build(rs, arch).parameters()) == params
    # the operator's own module: a depthwise conv in the extracted model
    plain = extract(net, archs[0]).blocks[0].op
    assert isinstance(plain, nn.Conv2d) and plain.groups == plain.in_channels == 8


def test_toy_operator_macs_match_a_count_of_the_built_model(dwconv):
    """The cost model's FLOPs of an all-dwconv arch equal conv/linear MACs counted from the modules."""
    rs = compile_space_text(TOY)
    arch = uniform_op(rs, "dwconv")
    model = build(rs, arch).eval()
    macs = 0

    def hook(m, i, o):
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            macs += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            macs += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, 16, 16))
    for h in handles:
        h.remove()
    assert CostModel(rs)(arch)[1] == macs


def test_toy_operator_validation(dwconv):
    text = TOY.replace("dwconv(kernel=5)", "dwconv(kernel=4)")
    e = raised(compile_space_text, text)
    assert e.message == "block s1.0: dwconv(kernel=4) has an even size"
    assert (e.line, e.column) == at(text, "dwconv(kernel=4)")
    text = TOY.replace("dwconv(kernel=5)", "dwconv(kernel=9)")
    e = raised(compile_space_text, text)
    assert e.message.startswith("block s1.0: dwconv(kernel=9): kernel 9 is larger than the 7")
    assert (e.line, e.column) == at(text, "dwconv(kernel=9)")
    e = raised(parse, TOY.replace("dwconv(kernel=5)", "dwconv(kernel=5, heads=2)"))
    assert e.message == "operator 'dwconv' has no argument 'heads'"
    e = raised(parse, TOY.replace("dwconv(kernel=5)", "dwconv(kernal=5)"))
    assert e.message == "operator 'dwconv' has no argument 'kernal'" and "did you mean 'kernel'" in e.hint


def test_registration_does_not_leak():
    assert "dwconv" not in REGISTRY
    with REGISTRY.extended(DWCONV):
        assert REGISTRY.names == ("conv", "local", "axial", "dwconv")
        with pytest.raises(ValueError, match="already registered"):
            REGISTRY.register(DWCONV)
    assert "dwconv" not in REGISTRY
    e = raised(parse, TOY)
    assert e.message == "unknown operator 'dwconv'"
    handle = REGISTRY.register(DWCONV)
    try:
        assert parse(TOY).block.spec.ops[1].kind == "dwconv"
    finally:
        handle.remove()
    assert REGISTRY.names == ("conv", "local", "axial")


def test_unknown_operator_in_a_space_file_is_located_and_lists_the_registered_names(dwconv):
    text = TOY.replace("dwconv(kernel=5)", "dwcnv(kernel=5)")
    e = raised(parse, text)
    assert e.message == "unknown operator 'dwcnv'"
    assert (e.line, e.column) == at(text, "dwcnv")
    assert e.hint == "did you mean 'dwconv'? (expected one of: conv, local, axial, dwconv)"
    e = raised(parse, TOY.replace("dwconv(kernel=5)", "sparse"))
    assert e.hint == "expected one of: conv, local, axial, dwconv"


def test_unknown_kinds_are_errors_in_python_apis(small_space):
    with pytest.raises(KeyError, match="registered operators: conv, local, axial"):
        operator("dwconv")
    with pytest.raises(ValidationError, match="unknown operator 'dwconv'; registered operators: conv, local, axial"):
        Op(kind="dwconv")
    with pytest.raises(ValidationError, match="operator 'conv' has no argument 'span'"):
        Op(kind="conv", span=3)
    with pytest.raises(KeyError, match="unknown operator 'dwconv'"):
        uniform_op(small_space, "dwconv")


def test_builtins_are_declared_once_with_their_defaults():
    assert REGISTRY.names == ("conv", "local", "axial")
    assert Op(kind="conv") == Op(kind="conv", kernel=3) and Op(kind="local").span == 7
    assert Op(kind="axial").span is None and Op(kind="axial").signature == "axial"
    assert [operator(k).attention for k in REGISTRY.names] == [False, True, True]
    assert operator("conv").keywords == ("kernel", "groups") and operator("local").keywords == ("span", "heads")


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "width"},
        {"name": "2d"},
        {"name": "x", "args": (Arg("heads"),)},
        {"name": "x", "args": (Arg("k", 4, odd=True),)},
        {"name": "x", "args": (Arg("k"), Arg("k"))},
    ],
)
def test_bad_declarations_are_rejected(bad):
    refs = dict(params="m:a", macs="m:a", super_params="m:a", plain_module="m:a", super_module="m:a")
    with pytest.raises(ValueError):
        Operator(**(refs | bad))


def test_space_stage_and_cost_model_stay_torch_free():
    code = (
        "import sys, trionet_dsl.space, trionet_dsl.space.cost; from trionet_dsl import load, CostModel; "
        "CostModel(load('spaces/trionet_r50.space')).extremes(); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "False"

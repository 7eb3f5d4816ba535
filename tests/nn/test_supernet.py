"""Supernet <-> standalone model equivalence, exact parameter counts, FLOPs vs an independent counter."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trionet_dsl import load_arch
from trionet_dsl.nn.network import build
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.cost import CostModel, arch_cost, supernet_params
from trionet_dsl.space.sampling import sample, uniform_op

SPACES = Path(__file__).resolve().parents[2] / "spaces"


@pytest.fixture(scope="module")
def small_net(small_space):
    torch.manual_seed(0)
    net = Supernet(small_space, seed=0)
    # give BN non-trivial statistics so eval-mode equivalence means something
    net.train()
    rng = random.Random(0)
    with torch.no_grad():
        for m in net.modules():  # the init zeroes every block's last BN: undo it, or blocks are identities
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        for _ in range(3):
            net.activate(sample(small_space, rng))
            net(torch.randn(8, 3, 32, 32))
    return net.eval()


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_resnet50_parameter_count_is_torchvisions():
    la = load_arch(SPACES / "archs" / "resnet50.arch")
    c = arch_cost(la.space, la.arch)
    assert c.params == 25_557_032
    assert abs(c.flops - 4.09e9) / 4.09e9 < 0.01  # ~4.1 G multiply-adds at 224x224
    assert _params(build(la.space, la.arch)) == 25_557_032


@pytest.mark.parametrize("name", ["sasa_r50", "axial_r50"])
def test_attention_r50_param_counts_match_modules(name):
    la = load_arch(SPACES / "archs" / f"{name}.arch")
    assert _params(build(la.space, la.arch)) == arch_cost(la.space, la.arch).params


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), strategy=st.sampled_from(["hierarchical", "uniform"]))
def test_extracted_model_equals_supernet(small_space, small_net, seed, strategy):
    arch = sample(small_space, random.Random(seed), strategy)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    small_net.activate(arch).eval()
    with torch.no_grad():
        ref = small_net(x)
        model = extract(small_net, arch).eval()
        out = model(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    cm = CostModel(small_space)
    assert _params(model) == cm(arch)[0]
    assert _params(build(small_space, arch)) == cm(arch)[0]


def test_forward_costs_the_subnetwork_not_the_supernet(small_space):
    net = Supernet(small_space, seed=0)
    arch = uniform_op(small_space, "local", largest=False)
    net.activate(arch)
    seen = {}
    for blk in net.blocks:
        for key, op in blk.ops.items():

            def hook(m, i, o, key=key, b=blk.block.key):
                seen[b] = (key, i[0].shape[1], o.shape[1])

            op.register_forward_hook(hook)
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    for b, rb in zip(arch.blocks, small_space.blocks, strict=True):
        key, cin, cout = seen[b.key]
        assert key.startswith("local") and cin == cout == min(rb.widths)
    # operators that did not run got no gradient at all
    for blk in net.blocks:
        for key, op in blk.ops.items():
            if not key.startswith("local"):
                assert all(p.grad is None for p in op.parameters())


def test_supernet_param_count_formula(small_space, r50_space):
    assert supernet_params(small_space) == _params(Supernet(small_space))
    assert supernet_params(r50_space) == _params(Supernet(r50_space))
    assert supernet_params(small_space, "prefix") == _params(Supernet(small_space, "prefix"))


def test_fvcore_agrees_on_conv_archs(small_space):
    fvcore = pytest.importorskip("fvcore.nn")
    for largest in (True, False):
        arch = uniform_op(small_space, "conv", largest=largest)
        model = build(small_space, arch).eval()
        counted = fvcore.FlopCountAnalysis(model, torch.zeros(1, 3, 32, 32))
        counted.unsupported_ops_warnings(False)
        counted.uncalled_modules_warnings(False)
        # the ResNet convention counts conv/linear multiply-adds only (not BN or pooling)
        by_op = counted.by_operator()
        theirs = by_op["conv"] + by_op["linear"]
        ours = CostModel(small_space)(arch)[1]
        assert abs(theirs - ours) / ours < 0.01, (theirs, ours)


def test_multihead_outputs_keep_their_place_after_the_operator(small_space):
    """Under Multi-head Sharing, (head i, channel j) of an attention operator meets the same BN
    entry and the same 1x1-expand column in every sub-network that has it."""
    from trionet_dsl.nn.ops.heads import grid_index

    net = Supernet(small_space, seed=0)
    blk = net.blocks[0]
    key = next(k for k in blk.ops if k.startswith("local"))
    op = blk.ops[key]
    big_d = op.grid[1]
    for w, h in [(8, 2), (8, 4), (16, 2), (16, 4), (12, 2), (12, 4)]:
        idx = op.output_index(w, h)
        cols = list(range(w)) if idx is None else idx.tolist()
        d = w // h
        # output channel c = head c // d, channel c % d sits at grid row (c // d) * D + c % d
        assert cols == [(c // d) * big_d + c % d for c in range(w)] == grid_index(op.grid, w, h)
    # prefix sharing: output channel c is always entry c
    pre = Supernet(small_space, "prefix", seed=0).blocks[0].ops[key]
    assert pre.output_index(8, 4) is None


EVEN_STEM = """space even_stem {
  input 3x35x35
  classes 5
  stem {
    conv 4x4 8 stride 2
    maxpool 2x2 stride 2
    avgpool 2x2 stride 2
  }
  block bottleneck expansion 2 {
    op conv(kernel=3) | conv(kernel=5)
    width 0.5x | 1.0x
  }
  stage s1 blocks 1 width 8 stride 1
  stage s2 blocks 2 width 16 stride 2
}
"""


def test_even_stem_kernels_build_and_cost_what_the_resolver_says():
    from trionet_dsl.space.cost import fixed_cost
    from trionet_dsl.space.loader import compile_space_text

    rs = compile_space_text(EVEN_STEM)
    assert rs.stem_hw == (4, 4)  # 35 -> 4x4/2 pad 1 -> 17 -> 2x2/2 -> 8 -> 2x2/2 -> 4
    # the stem alone: conv 3->8 (4x4, no bias) + BN, at 17x17 outputs; pooling is free
    fixed = fixed_cost(rs)
    assert fixed.params == 3 * 8 * 16 + 2 * 8 + rs.final_channels * 5 + 5
    assert fixed.flops == 17 * 17 * 3 * 8 * 16 + rs.final_channels * 5
    cm = CostModel(rs)
    for largest in (True, False):
        arch = uniform_op(rs, "conv", largest=largest)
        model = build(rs, arch).eval()
        seen = []
        for blk in model.blocks:
            blk.register_forward_hook(
                lambda m, i, o, seen=seen: seen.append((tuple(i[0].shape[1:]), tuple(o.shape[1:])))
            )
        x = torch.zeros(1, 3, 35, 35)
        with torch.no_grad():
            assert tuple(model.stem(x).shape[1:]) == (rs.stem_channels, *rs.stem_hw)
            assert tuple(model(x).shape) == (1, 5)
        assert seen == [((b.in_channels, *b.in_hw), (b.out_channels, *b.out_hw)) for b in rs.blocks]
        params, flops = cm(arch)
        assert _params(model) == params
        fvcore = pytest.importorskip("fvcore.nn")
        counted = fvcore.FlopCountAnalysis(model, x)
        counted.unsupported_ops_warnings(False)
        counted.uncalled_modules_warnings(False)
        by_op = counted.by_operator()
        assert by_op["conv"] + by_op["linear"] == flops

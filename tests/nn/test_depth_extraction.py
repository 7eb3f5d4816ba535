"""Elastic depth in the supernet: at every depth the extracted sub-network equals the supernet and
has exactly the parameters the cost model counts, under both sharing modes."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trionet_dsl import load, load_arch
from trionet_dsl.lang.ir import Arch
from trionet_dsl.nn.network import build
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.sampling import sample, sample_choice

SPACES = Path(__file__).resolve().parents[2] / "spaces"

BASIC = """
space basic_elastic {
  input 3x16x16
  classes 5
  block basic { op conv(kernel=3) | local(span=3) | axial; width 0.5x | 1.0x; heads 2 }
  stage s1 blocks 1..3 width 8 stride 1
  stage s2 blocks 2 | 3 width 16 stride 2
}
"""


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _trained_like(net: Supernet, space, seed: int) -> Supernet:
    """Non-trivial BN weights and statistics (the init zeroes each block's last BN: blocks would be identities)."""
    rng = random.Random(seed)
    inp = space.space.input
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        net.train()
        for _ in range(3):
            net.activate(sample(space, rng))
            net(torch.randn(4, inp.channels, inp.height, inp.width))
    return net.eval()


@pytest.fixture(scope="module", params=["multihead", "prefix"])
def nets(request):
    out = {}
    for rs in (load(SPACES / "trionet_small_elastic.space"), compile_space_text(BASIC)):
        out[rs.name] = (rs, _trained_like(Supernet(rs, request.param, seed=0), rs, 0))
    return out


def _arch_at(space, depths: dict[str, int], rng: random.Random) -> Arch:
    blocks = tuple(
        b.arch_block(sample_choice(b, rng, "hierarchical")) for b in space.blocks if b.index < depths[b.stage]
    )
    return Arch(name="a", space=space.name, blocks=blocks, depths={s: depths[s] for s in space.elastic})


def _check(space, net: Supernet, arch: Arch, seed: int) -> None:
    inp = space.space.input
    x = torch.randn(2, inp.channels, inp.height, inp.width, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = net.activate(arch).eval()(x)
        model = extract(net, arch).eval()
        out = model(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    assert len(model.blocks) == len(arch.blocks) == sum(space.depths(arch).values())
    params = CostModel(space)(arch)[0]
    assert _params(model) == params
    assert _params(build(space, arch)) == params


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), which=st.sampled_from(["trionet_small_elastic", "basic_elastic"]))
def test_extracted_equals_supernet_at_random_depths(nets, seed, which):
    space, net = nets[which]
    rng = random.Random(seed)
    depths = {s: rng.choice(d) for s, d in space.depth_choices.items()}
    _check(space, net, _arch_at(space, depths, rng), seed)


def test_every_depth_combination_of_the_basic_space(nets):
    space, net = nets["basic_elastic"]
    stages = list(space.depth_choices)
    for i, combo in enumerate(itertools.product(*(space.depth_choices[s] for s in stages))):
        _check(space, net, _arch_at(space, dict(zip(stages, combo, strict=True)), random.Random(i)), i)


def test_skipped_blocks_do_not_run(nets):
    """Depth 1 everywhere: the supernet runs one block per stage, whatever the others hold."""
    space, net = nets["trionet_small_elastic"]
    arch = _arch_at(space, {s: 1 for s in space.depth_choices}, random.Random(0))
    net.activate(arch)
    assert [b.block.key for b in net.active_blocks()] == ["s1.0", "s2.0", "s3.0"]
    calls: list[str] = []
    hooks = [b.register_forward_hook(lambda m, i, o: calls.append(m.block.key)) for b in net.bottlenecks()]
    try:
        with torch.no_grad():
            net(torch.randn(1, 3, 32, 32))
    finally:
        for h in hooks:
            h.remove()
    assert calls == ["s1.0", "s2.0", "s3.0"]


def test_shipped_shallow_arch_builds_its_depths():
    la = load_arch(SPACES / "archs" / "trionet_small_elastic_shallow.arch")
    model = build(la.space, la.arch)
    assert len(model.blocks) == 6
    assert _params(model) == CostModel(la.space)(la.arch)[0] == 137_306

"""Every operator in a basic block (in -> width, then width -> out): exact params, extraction equality.

Built on two branches at once (block types; the grouped and global operators): this test is
where they meet, for both sharing modes.
"""

from __future__ import annotations

import random

import pytest
import torch

from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.cost import CostModel, supernet_params
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.sampling import sample, uniform_op

SPACE = """space g {
  input 3x16x16
  classes 10
  stem { conv 3x3 16 }
  block basic {
    op conv(kernel=3, groups=4) | global | local(span=3) | axial | axial(qk_ratio=2, shared_pos=1, bn=1)
    width 16 | 32
    heads 2 | 4
  }
  stage s1 blocks 1 width 16
  stage s2 blocks 1 width 32 stride 2
}"""


def _numel(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("sharing", ["multihead", "prefix"])
def test_basic_blocks_with_every_operator_extract_exactly(sharing):
    rs = compile_space_text(SPACE)
    net = Supernet(rs, sharing, seed=0).eval()
    assert supernet_params(rs, sharing) == _numel(net)
    cost = CostModel(rs)
    rng = random.Random(0)
    archs = [uniform_op(rs, k, largest=False) for k in ("conv", "global", "local", "axial")]
    archs += [sample(rs, rng) for _ in range(10)]
    x = torch.randn(2, 3, 16, 16)
    for arch in archs:
        net.activate(arch)
        plain = extract(net, arch).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x), plain(x), rtol=0, atol=1e-5)
        assert cost(arch)[0] == _numel(plain), [b.op.kind for b in arch.blocks]

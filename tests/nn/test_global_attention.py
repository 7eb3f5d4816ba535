"""The `global` operator (BoTNet MHSA): loops, counts, sharing, supernet == extracted, export, BoT50."""

from __future__ import annotations

import io
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
from trionet_dsl.lang.ir import Op
from trionet_dsl.lang.operators import operator
from trionet_dsl.nn.network import build
from trionet_dsl.nn.ops.global_attention import GlobalAttention2d, SuperGlobalAttention
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.cost import CostModel, arch_cost, supernet_params
from trionet_dsl.space.loader import compile_arch_text, compile_space_text
from trionet_dsl.space.sampling import sample

SPACES = Path(__file__).resolve().parents[2] / "spaces"

HYBRID = """space hybrid {
  input 3x16x16
  classes 4
  stem {
    conv 3x3 8 stride 2
  }
  block bottleneck expansion 2 {
    op conv(kernel=3) | global | local(span=3)
    width 8 | 16
    heads 2 | 4
  }
  stage s1 blocks 1 width 16 stride 1
  stage s2 blocks 2 width 16 stride 2
}
"""


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def naive_global(x: torch.Tensor, m: GlobalAttention2d) -> torch.Tensor:
    """The BoTNet formula pixel by pixel: softmax_p(q_o.k_p + q_o.(rh[a-i] + rw[b-j])) v_p."""
    n, _, hh, ww = x.shape
    h, d = m.heads, m.width // m.heads
    q = torch.einsum("oc,nchw->nohw", m.wq, x)
    k = torch.einsum("oc,nchw->nohw", m.wk, x)
    v = torch.einsum("oc,nchw->nohw", m.wv, x)
    out = torch.zeros(n, m.width, hh, ww)
    ch, cw = m.max_hw[0] - 1, m.max_hw[1] - 1
    for head in range(h):
        sl = slice(head * d, (head + 1) * d)
        for i in range(hh):
            for j in range(ww):
                logits = torch.empty(n, hh, ww)
                for a in range(hh):
                    for b in range(ww):
                        r = m.rh[head, :, a - i + ch] + m.rw[head, :, b - j + cw]
                        logits[:, a, b] = (q[:, sl, i, j] * (k[:, sl, a, b] + r)).sum(1)
                attn = torch.softmax(logits.reshape(n, -1), 1).reshape(n, 1, hh, ww)
                out[:, sl, i, j] = (attn * v[:, sl]).sum((2, 3))
    return F.avg_pool2d(out, m.stride, m.stride, ceil_mode=True) if m.stride > 1 else out


@pytest.mark.parametrize(("heads", "stride", "shape", "max_hw"), [(2, 1, (4, 5), (4, 5)), (1, 2, (3, 4), (5, 6))])
def test_global_matches_loops(heads, stride, shape, max_hw):
    torch.manual_seed(0)
    m = GlobalAttention2d(6, 4, heads, max_hw, stride)
    x = torch.randn(2, 6, *shape)
    with torch.no_grad():
        torch.testing.assert_close(m(x), naive_global(x, m), atol=1e-4, rtol=1e-4)


def test_global_rejects_a_larger_map():
    with pytest.raises(ValueError, match="built for 4x4 feature maps got 5x4"):
        GlobalAttention2d(4, 4, 1, (4, 4))(torch.randn(1, 4, 5, 4))


def test_param_formula_and_fvcore_macs():
    fvcore = pytest.importorskip("fvcore.nn")
    w, h, hw = 12, 3, (6, 5)
    m = GlobalAttention2d(w, w, h, hw).eval()
    count = operator("global").count_params(Op(kind="global"), width=w, heads=h, in_hw=hw)
    assert _params(m) == count == 3 * w * w + w * (11 + 9)
    counted = fvcore.FlopCountAnalysis(m, torch.zeros(1, w, *hw))
    counted.unsupported_ops_warnings(False)
    macs = operator("global").count_macs(Op(kind="global"), width=w, heads=h, in_hw=hw, stride=1)
    assert counted.total() == macs  # fvcore counts the 1x1 conv, both matmuls and the two einsums


@pytest.mark.parametrize("sharing", ["multihead", "prefix"])
def test_super_equals_extracted_and_heads_keep_their_weights(sharing):
    torch.manual_seed(1)
    sup = SuperGlobalAttention(16, (8, 16), (2, 4), (4, 4), 2, sharing).eval()
    x = torch.randn(2, 16, 4, 4)
    for w, h in [(8, 2), (8, 4), (16, 2), (16, 4)]:
        plain = sup.extract(w, h)
        assert _params(plain) == operator("global").count_params(Op(kind="global"), width=w, heads=h, in_hw=(4, 4))
        torch.testing.assert_close(plain(x[:, :w]), sup(x[:, :w], w, h))
    if sharing == "multihead":  # head 0 of (8, 4) reads the leading 2 channels of head 0 of (16, 2)
        a, b = sup.weights(16, 8, 4), sup.weights(16, 16, 2)
        torch.testing.assert_close(a[0][:2], b[0][:2])
        torch.testing.assert_close(a[3][0], b[3][0, :2])


def test_supernet_param_formula():
    rs = compile_space_text(HYBRID)
    assert supernet_params(rs) == _params(Supernet(rs))
    assert supernet_params(rs, "prefix") == _params(Supernet(rs, "prefix"))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), sharing=st.sampled_from(["multihead", "prefix"]))
def test_extracted_model_equals_supernet(seed, sharing):
    rs = compile_space_text(HYBRID)
    torch.manual_seed(seed)
    net = Supernet(rs, sharing, seed=seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    arch = sample(rs, random.Random(seed))
    net.activate(arch).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = net(x)
        out = extract(net, arch).eval()(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    assert _params(extract(net, arch)) == CostModel(rs)(arch)[0]


ALL_GLOBAL = """arch g of hybrid {
  s1.0 global width 16 heads 4
  s2.0 global width 8 heads 2
  s2.1 global width 16 heads 2
}
"""


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_global_model_exports(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from trionet_dsl.app.export import export

    la = compile_arch_text(ALL_GLOBAL, "g.arch", compile_space_text(HYBRID))
    torch.manual_seed(0)
    res = export(build(la.space, la.arch), la, tmp_path / f"m.{fmt}", fmt)
    assert res.max_abs_diff < 1e-4


def test_plain_global_scripts_and_runs_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    m = GlobalAttention2d(8, 8, 2, (6, 6), 2).eval()
    x = torch.randn(2, 8, 6, 6)
    ref = m(x)
    torch.testing.assert_close(torch.jit.script(m)(x), ref)
    buf = io.BytesIO()
    torch.onnx.export(m, (x,), buf, dynamo=False, opset_version=17, input_names=["x"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    torch.testing.assert_close(torch.from_numpy(sess.run(None, {"x": x.numpy()})[0]), ref, atol=1e-5, rtol=1e-4)


def test_botnet50_params():
    la = load_arch(SPACES / "archs" / "botnet50.arch")
    # ResNet-50 (torchvision's 25,557,032) less three 512x512 3x3 convs, plus three q/k/v
    # projections and per-head row/column embeddings (14x14 for s4.0, 7x7 for s4.1-2)
    expected = 25_557_032 - 3 * 512 * 512 * 9 + 3 * 3 * 512 * 512 + 512 * (27 + 27) + 2 * 512 * (13 + 13)
    assert arch_cost(la.space, la.arch).params == expected == 20_892_712
    assert _params(build(la.space, la.arch)) == expected


def test_botnet50_trains_a_step():
    la = load_arch(SPACES / "archs" / "botnet50.arch")
    space = compile_space_text(
        (SPACES / "botnet_r50.space").read_text().replace("3x224x224", "3x64x64").replace("classes 1000", "classes 3")
    )
    model = build(space, la.arch).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    before = model(x).detach()
    opt.step()
    assert not torch.allclose(model(x), before)


def test_global_over_a_too_large_map_is_located_with_a_hint():
    text = HYBRID.replace("input 3x16x16", "input 3x64x64")  # s1 at 32x32: 4 x 1024^2 floats = 16 MiB
    assert compile_space_text(text)
    text = text.replace("op conv(kernel=3) | global |", "op conv(kernel=3) | global(max_mib=8) |")
    e = raised(compile_space_text, text, "h.space")
    assert e.message == (
        "block s1.0: global(max_mib=8): 4 heads over a 32x32 feature map need 16 MiB of attention "
        "logits per image (heads x (HW)^2 floats), over the cap of 8 MiB"
    )
    assert (e.line, e.column) == at(text, "global(max_mib=8)")
    assert e.hint is not None and "global(max_mib=17)" in e.hint
    big = HYBRID.replace("input 3x16x16", "input 3x128x128")  # 64x64: 4 x 4096^2 floats = 256 MiB > 64
    e = raised(compile_space_text, big, "h.space")
    assert "over the cap of 64 MiB" in e.message and (e.line, e.column) == at(big, "global")

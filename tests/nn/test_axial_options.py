"""Axial-DeepLab's options on the axial operator (qk_ratio, shared_pos, bn): loops, exact counts,
supernet == extracted with BN statistics, export, and Axial-ResNet-S against the paper."""

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
from trionet_dsl.nn.ops.axial_attention import AxialAttention2d, SuperAxialAttention
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.cost import CostModel, arch_cost, supernet_params
from trionet_dsl.space.loader import compile_space_text
from trionet_dsl.space.op_costs import axial_attention_params
from trionet_dsl.space.sampling import sample

SPACES = Path(__file__).resolve().parents[2] / "spaces"
OPTIONS = [(1, False, False), (2, False, False), (2, True, False), (1, False, True), (2, True, True)]

SPACE = """space ax {
  input 3x16x16
  classes 4
  stem {
    conv 3x3 8 stride 2
  }
  block bottleneck expansion 2 {
    op conv(kernel=3) | axial(qk_ratio=2, bn=1) | axial(qk_ratio=2, shared_pos=1, bn=1)
    width 8 | 16
    heads 2 | 4
  }
  stage s1 blocks 1 width 16 stride 1
  stage s2 blocks 2 width 16 stride 2
}
"""


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _randomise(m: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.normal_(1.0 if name.endswith("_weight") else 0.0, 0.3)
        for name, b in m.named_buffers():
            if name.endswith("_mean"):
                b.normal_(0, 0.3)
            elif name.endswith("_var"):
                b.uniform_(0.5, 1.5)
    return m


def _op(ratio: int, shared: bool, bn: bool) -> Op:
    return Op(
        kind="axial", qk_ratio=ratio if ratio > 1 else None, shared_pos=1 if shared else None, bn=1 if bn else None
    )


def naive_layer(x, m, prefix, heads):
    """Axial-DeepLab's layer along dim 2 by loops, BN in eval mode as per-channel affine maps."""
    g = {n: getattr(m, prefix + n) for n in ("wq", "wk", "wv", "rq", "rk", "rv")}
    norm = getattr(m, prefix + "norm")

    def bn(t, part, c):  # t (..., channel c of the named BN)
        if norm is None:
            return t
        w, b = getattr(norm, part + "_weight")[c], getattr(norm, part + "_bias")[c]
        mu, var = getattr(norm, part + "_mean")[c], getattr(norm, part + "_var")[c]
        return (t - mu) / torch.sqrt(var + 1e-5) * w + b

    n, _, length, other = x.shape
    wqk, w = g["wq"].shape[0], g["wv"].shape[0]
    dq, d = wqk // heads, w // heads
    mx = (g["rq"].shape[2] + 1) // 2
    proj = torch.einsum("oc,nclm->nolm", torch.cat([g["wq"], g["wk"], g["wv"]]), x)
    proj = torch.stack([bn(proj[:, c], "qkv", c) for c in range(proj.shape[1])], 1)
    q, k, v = proj[:, :wqk], proj[:, wqk : 2 * wqk], proj[:, 2 * wqk :]
    out = torch.zeros(n, w, length, other)
    for h in range(heads):
        e = 0 if g["rq"].shape[0] == 1 else h
        qs, vs = slice(h * dq, (h + 1) * dq), slice(h * d, (h + 1) * d)
        for o in range(length):
            terms = []
            for p in range(length):
                r = p - o + mx - 1
                terms.append(
                    torch.stack(
                        [
                            (q[:, qs, o] * k[:, qs, p]).sum(1),
                            (q[:, qs, o] * g["rq"][e, :, r, None]).sum(1),
                            (k[:, qs, p] * g["rk"][e, :, r, None]).sum(1),
                        ]
                    )
                )
            t = torch.stack(terms)  # (L_p, 3, N, M)
            logits = sum(bn(t[:, i], "sim", i * m.heads + h) for i in range(3))
            attn = torch.softmax(logits, 0)  # (L_p, N, M)
            sv = torch.einsum("pnm,ncpm->ncm", attn, v[:, vs])
            sve = torch.einsum("pnm,cp->ncm", attn, g["rv"][e][:, [p - o + mx - 1 for p in range(length)]])
            for c in range(d):
                out[:, h * d + c, o] = bn(sv[:, c], "out", h * d + c) + bn(sve[:, c], "out", w + h * d + c)
    return out


@pytest.mark.parametrize(("ratio", "shared", "bn"), OPTIONS)
def test_options_match_loops_and_count_exactly(ratio, shared, bn):
    torch.manual_seed(0)
    m = _randomise(AxialAttention2d(6, 8, 2, 5, 0, 1, ratio, shared, bn)).eval()
    x = torch.randn(2, 6, 4, 5)
    with torch.no_grad():
        ref = naive_layer(x, m, "h_", 2)
        ref = naive_layer(ref.transpose(2, 3), m, "w_", 2).transpose(2, 3)
        torch.testing.assert_close(m(x), ref, atol=1e-4, rtol=1e-4)
    # parameters by hand: per layer q/k/v rows, embeddings (per head or one table), 3 BNs
    w, h, cin, off = 8, 2, 6, 9
    rows = 2 * w // ratio + w
    emb = (2 * (w // h) // ratio + w // h if shared else rows) * off
    norms = 2 * (rows + 3 * h + 2 * w) if bn else 0
    hand = rows * cin + rows * w + 2 * (emb + norms)
    assert _params(m) == hand == axial_attention_params(cin, w, h, 5, ratio, shared, bn)
    square = AxialAttention2d(w, w, h, 5, 0, 1, ratio, shared, bn)  # a bottleneck's: C_in = width
    assert _params(square) == operator("axial").count_params(_op(ratio, shared, bn), width=w, heads=h, in_hw=(5, 5))


@pytest.mark.parametrize("ratio", [1, 2])
def test_qk_ratio_macs_agree_with_fvcore(ratio):
    fvcore = pytest.importorskip("fvcore.nn")
    m = AxialAttention2d(8, 8, 2, 6, 0, 1, ratio, True, True).eval()
    counted = fvcore.FlopCountAnalysis(m, torch.zeros(1, 8, 6, 5))
    counted.unsupported_ops_warnings(False)
    by_op = counted.by_operator()
    theirs = sum(v for k, v in by_op.items() if k != "batch_norm")  # BN is not counted (ResNet convention)
    assert theirs == operator("axial").count_macs(_op(ratio, True, True), width=8, heads=2, in_hw=(6, 5), stride=1)


@pytest.mark.parametrize("sharing", ["multihead", "prefix"])
@pytest.mark.parametrize(("ratio", "shared", "bn"), OPTIONS[1:])
def test_super_equals_extracted_and_updates_the_same_statistics(sharing, ratio, shared, bn):
    torch.manual_seed(3)
    widths, heads = (8, 16), (2, 4)
    sup = _randomise(SuperAxialAttention(16, widths, heads, 6, 0, 2, sharing, ratio, shared, bn))
    x = torch.randn(3, 16, 6, 5)
    for w, h in [(8, 2), (16, 4), (8, 4), (16, 2)]:
        sup.eval()
        plain = sup.extract(w, h)
        assert _params(plain) == operator("axial").count_params(_op(ratio, shared, bn), width=w, heads=h, in_hw=(6, 6))
        torch.testing.assert_close(plain(x[:, :w]), sup(x[:, :w], w, h), atol=1e-5, rtol=1e-4)
        if bn:  # one training step of each updates the same running statistics
            sup.train(), plain.train()
            sup(x[:, :w], w, h), plain(x[:, :w])
            again = sup.eval().extract(w, h)
            for a, b in zip(again.buffers(), plain.buffers(), strict=True):
                torch.testing.assert_close(a, b)


def test_supernet_formula_and_extraction():
    rs = compile_space_text(SPACE)
    assert supernet_params(rs) == _params(Supernet(rs))
    assert supernet_params(rs, "prefix") == _params(Supernet(rs, "prefix"))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), sharing=st.sampled_from(["multihead", "prefix"]))
def test_extracted_model_equals_supernet(seed, sharing):
    rs = compile_space_text(SPACE)
    torch.manual_seed(seed)
    net = _randomise(Supernet(rs, sharing, seed=seed))
    arch = sample(rs, random.Random(seed))
    net.activate(arch).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = net(x)
        model = extract(net, arch).eval()
        torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)
    assert _params(model) == CostModel(rs)(arch)[0] == _params(build(rs, arch))


def test_options_script_and_onnx():
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    m = _randomise(AxialAttention2d(8, 8, 2, 6, 0, 2, 2, True, True)).eval()
    x = torch.randn(2, 8, 6, 6)
    ref = m(x)
    torch.testing.assert_close(torch.jit.script(m)(x), ref)
    buf = io.BytesIO()
    torch.onnx.export(m, (x,), buf, dynamo=False, opset_version=17, input_names=["x"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    torch.testing.assert_close(torch.from_numpy(sess.run(None, {"x": x.numpy()})[0]), ref, atol=1e-4, rtol=1e-4)


def test_axial_resnet_s_against_the_paper():
    la = load_arch(SPACES / "archs" / "axial_resnet_s.arch")
    c = arch_cost(la.space, la.arch)
    assert c.params == _params(build(la.space, la.arch)) == 11_593_768
    assert c.flops == 2_842_942_464
    # the distance the README states: -6.5% params, +1.5% multiply-adds against 12.4 M / 2.8 B
    assert round(100 * (c.params / 12.4e6 - 1), 1) == -6.5 and round(100 * (c.flops / 2.8e9 - 1), 1) == 1.5


def test_axial_resnet_s_trains_in_train_mode():
    la = load_arch(SPACES / "archs" / "axial_resnet_s.arch")
    small = compile_space_text(
        (SPACES / "axial_resnet.space").read_text().replace("3x224x224", "3x32x32").replace("classes 1000", "classes 2")
    )
    model = build(small, la.arch).train()
    loss = F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss)


def test_option_errors_are_located_with_hints():
    text = SPACE.replace("heads 2 | 4", "heads 2 | 8")  # width 8 / 8 heads = head dim 1: qk_ratio 2 cannot halve it
    e = raised(compile_space_text, text, "a.space")
    assert e.message == (
        "block s1.0: axial(qk_ratio=2, bn=1): qk_ratio=2 does not divide the head dim 1 of width 8 with 8 heads"
    )
    assert (e.line, e.column) == at(text, "axial(qk_ratio=2, bn=1)")
    assert e.hint is not None and "multiple of 2" in e.hint
    text = SPACE.replace("axial(qk_ratio=2, bn=1)", "axial(bn=2)")
    e = raised(compile_space_text, text, "a.space")
    assert (
        e.message == "block s1.0: axial(bn=2): bn is a flag" and e.hint == "write bn=1, or leave it out for the default"
    )
    assert (e.line, e.column) == at(text, "axial(bn=2)")

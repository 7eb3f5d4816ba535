"""Operators against naive loop references, Multi-head Sharing, slicing, and export."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trionet_dsl.lang.ir import Op
from trionet_dsl.lang.operators import operator
from trionet_dsl.nn.ops import (
    AxialAttention2d,
    LocalAttention2d,
    SlicedBatchNorm2d,
    SuperAxialAttention,
    SuperLocalAttention,
)
from trionet_dsl.nn.ops.local_attention import SHIFTED


def naive_local(x, m):
    n, _, hh, ww = x.shape
    heads, p = m.heads, m.span // 2
    w = m.wq.shape[0]
    d = w // heads
    dr = m.rel_row.shape[1]
    q, kk, v = (torch.einsum("oc,nchw->nohw", t, x) for t in (m.wq, m.wk, m.wv))
    out = torch.zeros(n, w, hh, ww)
    for b in range(n):
        for h in range(heads):
            s = slice(h * d, (h + 1) * d)
            for i in range(hh):
                for j in range(ww):
                    logits, vals = [], []
                    for a in range(-p, p + 1):
                        for c in range(-p, p + 1):
                            if 0 <= i + a < hh and 0 <= j + c < ww:
                                qq = q[b, s, i, j]
                                logits.append(
                                    (qq * kk[b, s, i + a, j + c]).sum()
                                    + (qq[:dr] * m.rel_row[h, :, a + p]).sum()
                                    + (qq[dr:] * m.rel_col[h, :, c + p]).sum()
                                )
                                vals.append(v[b, s, i + a, j + c])
                    att = torch.softmax(torch.stack(logits), 0)
                    out[b, s, i, j] = (att[:, None] * torch.stack(vals)).sum(0)
    if m.stride > 1:
        out = torch.nn.functional.avg_pool2d(out, m.stride, m.stride, ceil_mode=True)
    return out


def naive_axial_layer(x, wq, wk, wv, rq, rk, rv, heads, span):
    """Attention along dim 2 by explicit loops over output positions."""
    n, _, length, other = x.shape
    w = wq.shape[0]
    d = w // heads
    mx = (rq.shape[2] + 1) // 2
    q, k, v = (torch.einsum("oc,nclm->nolm", t, x) for t in (wq, wk, wv))
    out = torch.zeros(n, w, length, other)
    for h in range(heads):
        s = slice(h * d, (h + 1) * d)
        for o in range(length):
            logits = []
            for p in range(length):
                r = p - o + mx - 1
                lg = (
                    (q[:, s, o] * k[:, s, p]).sum(1)
                    + (q[:, s, o] * rq[h, :, r, None]).sum(1)
                    + (k[:, s, p] * rk[h, :, r, None]).sum(1)
                )
                if span and abs(p - o) > span // 2:
                    lg = torch.full_like(lg, float("-inf"))
                logits.append(lg)
            att = torch.softmax(torch.stack(logits, 1), 1)  # n, L_p, m
            for p in range(length):
                r = p - o + mx - 1
                out[:, s, o] += att[:, None, p] * (v[:, s, p] + rv[h, :, r, None])
    return out


def naive_axial(x, m):
    hw = [m.h_wq, m.h_wk, m.h_wv, m.h_rq, m.h_rk, m.h_rv]
    ww = [m.w_wq, m.w_wk, m.w_wv, m.w_rq, m.w_rk, m.w_rv]
    y = naive_axial_layer(x, *hw, m.heads, m.span)
    y = naive_axial_layer(y.transpose(2, 3), *ww, m.heads, m.span).transpose(2, 3)
    if m.stride > 1:
        y = torch.nn.functional.avg_pool2d(y, m.stride, m.stride, ceil_mode=True)
    return y


def _randomise(m):
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m


@pytest.mark.parametrize("heads,span,stride,shape", [(2, 3, 1, (5, 6)), (4, 5, 2, (7, 9)), (1, 3, 2, (4, 4))])
def test_local_matches_loops(heads, span, stride, shape):
    torch.manual_seed(0)
    m = _randomise(LocalAttention2d(6, 12, heads, span, stride))
    x = torch.randn(2, 6, *shape)
    y = m(x)
    assert y.shape == (2, 12, math.ceil(shape[0] / stride), math.ceil(shape[1] / stride))
    torch.testing.assert_close(y, naive_local(x, m), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize(
    "width,heads,span,stride,shape",
    [(10, 2, 3, 1, (7, 9)), (9, 3, 5, 2, (8, 5)), (5, 1, 7, 1, (6, 6)), (4, 2, 1, 3, (5, 7))],
)
def test_local_banded_equals_unfold(dtype, tol, width, heads, span, stride, shape):
    """Bands of output rows and the offset loop (hand-written backwards) give today's values and
    gradients: odd head dims, strides, and borders where the halo is zero-padded and masked."""
    torch.manual_seed(0)
    m = _randomise(LocalAttention2d(6, width, heads, span, stride, chunk_rows=0)).to(dtype)
    x = torch.randn(2, 6, *shape, dtype=dtype, requires_grad=True)
    params = [x, *m.parameters()]
    ref = m(x)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(ref, params, g)
    for rows in (1, 2, 3, SHIFTED):
        m.chunk_rows = rows
        y = m(x)
        torch.testing.assert_close(y, ref, atol=tol, rtol=tol)
        for a, b in zip(torch.autograd.grad(y, params, g), grads, strict=True):
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def test_local_banded_auto_and_super(monkeypatch):
    """Auto mode bands once the unfold passes CHUNK_BYTES; the super operator takes the same path."""
    import importlib

    la = importlib.import_module("trionet_dsl.nn.ops.local_attention")

    assert la.chunk_rows_for(2, 8, 3, 6, 6, 4, None) == 6
    monkeypatch.setattr(la, "CHUNK_BYTES", 2 * 2 * 8 * 9 * 6 * 4 * 2)  # two rows' unfold
    assert la.chunk_rows_for(2, 8, 3, 6, 6, 4, None) == 2
    assert la.chunk_rows_for(2, 8, 3, 6, 6, 4, 0) == 6
    torch.manual_seed(0)
    sup = _randomise(SuperLocalAttention(8, (4, 8), (1, 2), span=3))
    x = torch.randn(2, 8, 6, 6)
    banded = sup(x, 8, 2)
    sup.chunk_rows = 0
    torch.testing.assert_close(banded, sup(x, 8, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("heads,span,stride,shape,max_len", [(2, 0, 1, (5, 6), 6), (3, 3, 2, (7, 5), 9)])
def test_axial_matches_loops(heads, span, stride, shape, max_len):
    torch.manual_seed(0)
    m = _randomise(AxialAttention2d(4, 6, heads, max_len, span, stride))
    x = torch.randn(2, 4, *shape)
    torch.testing.assert_close(m(x), naive_axial(x, m), atol=1e-4, rtol=1e-4)


def test_axial_rejects_longer_axis():
    m = AxialAttention2d(4, 4, 2, max_len=4)
    with pytest.raises(ValueError, match="max_len=4"):
        m(torch.randn(1, 4, 5, 3))


WIDTHS, HEADS = (8, 12, 16), (2, 4)


@pytest.mark.parametrize("cls", [SuperLocalAttention, SuperAxialAttention])
@pytest.mark.parametrize("sharing", ["multihead", "prefix"])
@settings(max_examples=12, deadline=None)
@given(wi=st.integers(0, 2), hi=st.integers(0, 1), stride=st.sampled_from([1, 2]))
def test_super_equals_extracted(cls, sharing, wi, hi, stride):
    w, h = WIDTHS[wi], HEADS[hi]
    torch.manual_seed(wi * 10 + hi)
    kw = {"span": 3} if cls is SuperLocalAttention else {"max_len": 7}
    sup = _randomise(cls(16, WIDTHS, HEADS, stride=stride, sharing=sharing, **kw))
    x = torch.randn(2, w, 7, 6)
    torch.testing.assert_close(sup(x, w, h), sup.extract(w, h)(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [SuperLocalAttention, SuperAxialAttention])
def test_multihead_sharing_head_means_the_same_everywhere(cls):
    kw = {"span": 3} if cls is SuperLocalAttention else {"max_len": 7}
    sup = _randomise(cls(16, WIDTHS, HEADS, sharing="multihead", **kw))
    # head 0 and head 1 exist in every (w, h); narrower heads read the leading channels of the same head
    for i in (0, 1):
        ref = sup.head_weights(i, 16, 2)  # d = 8: the widest head
        for w, h in [(8, 2), (12, 2), (8, 4), (12, 4), (16, 4)]:
            got = sup.head_weights(i, w, h)
            d = w // h
            for name, t in got.items():
                r = ref[name]
                if name in ("rel_row", "rel_col"):
                    torch.testing.assert_close(t, r[: t.shape[0]])
                elif name.startswith("r"):
                    torch.testing.assert_close(t, r[:d])
                elif t.dim() == 3:  # width layer: (d, input heads, d) — input columns keep their head too
                    common = min(h, r.shape[1])
                    torch.testing.assert_close(t[:, :common], r[:d, :common, :d])
                else:
                    torch.testing.assert_close(t, r[:d, : t.shape[1]])


def test_prefix_sharing_cuts_across_heads():
    sup = _randomise(SuperLocalAttention(16, WIDTHS, HEADS, span=3, sharing="prefix"))
    a = sup.head_weights(1, 16, 4)["wq"]  # rows 4..7
    b = sup.head_weights(1, 16, 2)["wq"]  # rows 8..15
    assert not torch.equal(a, b[: a.shape[0]])
    mh = _randomise(SuperLocalAttention(16, WIDTHS, HEADS, span=3, sharing="multihead"))
    a = mh.head_weights(1, 16, 4)["wq"]
    b = mh.head_weights(1, 16, 2)["wq"]
    assert torch.equal(a, b[: a.shape[0]])


def test_gradient_reaches_only_the_used_slice():
    sup = SuperLocalAttention(16, WIDTHS, HEADS, span=3, sharing="multihead")
    sup(torch.randn(2, 8, 5, 5), 8, 2).sum().backward()
    big_h, big_d = sup.grid
    g = sup.wq.grad.reshape(big_h, big_d, -1)
    assert g[:2, :4, :8].abs().sum() > 0
    assert g[2:].abs().sum() == 0 and g[:, 4:].abs().sum() == 0 and g[:, :, 8:].abs().sum() == 0


def test_sliced_batchnorm_updates_only_its_slice():
    bn = SlicedBatchNorm2d(8)
    bn.train()
    bn(torch.randn(4, 3, 5, 5) + 3.0)
    assert (bn.running_mean[:3] > 0.1).all() and (bn.running_mean[3:] == 0).all()
    bn.eval()
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(bn(x), bn.extract(3).eval()(x))


@pytest.mark.parametrize("kind", ["local", "axial"])
def test_param_and_mac_formulas(kind):
    w, h, span, max_len, hh, ww = 12, 4, 5, 9, 9, 7
    m = LocalAttention2d(w, w, h, span) if kind == "local" else AxialAttention2d(w, w, h, max_len)
    op = Op(kind="local", span=span) if kind == "local" else Op(kind="axial")
    assert sum(p.numel() for p in m.parameters()) == operator(kind).count_params(
        op, width=w, heads=h, in_hw=(max_len, max_len)
    )
    # count the multiply-adds of every product from the tensor sizes the operator uses
    hw, d = hh * ww, w // h
    if kind == "local":
        proj = 3 * hw * w * w
        content = hw * h * d * span * span  # q.k over the neighbourhood
        relative = hw * h * (math.ceil(d / 2) + d // 2) * span  # row and column terms
        weighted = hw * h * d * span * span
        expected = proj + content + relative + weighted
    else:
        expected = 0
        for length in (hh, ww):
            expected += 3 * hw * w * w + 5 * (hw * length * h * d)  # qk, q.rq, k.rk, attn.v, attn.rv
    assert operator(kind).count_macs(op, width=w, heads=h, in_hw=(hh, ww), stride=1) == expected


@pytest.mark.parametrize("kind", ["local", "axial"])
def test_plain_ops_script_and_onnx(kind):
    torch.manual_seed(0)
    m = (LocalAttention2d(8, 8, 2, 3, 2) if kind == "local" else AxialAttention2d(8, 8, 2, 6, 0, 2)).eval()
    x = torch.randn(2, 8, 6, 6)
    ref = m(x)
    torch.testing.assert_close(torch.jit.script(m)(x), ref)
    ort = pytest.importorskip("onnxruntime")
    buf = io.BytesIO()
    torch.onnx.export(m, (x,), buf, dynamo=False, opset_version=17, input_names=["x"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    out = torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_offset_loop_is_a_checked_custom_op():
    """The offset loop is registered as custom operators (forward, backward): PyTorch's own checker
    runs the schema, the fake kernels (shapes and strides the compiler is promised) and the registered
    autograd against the real kernels, strides and borders included."""
    from trionet_dsl.nn.ops.local_attention import _shifted_backward_op, _shifted_op

    torch.manual_seed(0)
    for n, w, heads, span, (hh, ww) in [(2, 6, 2, 3, (5, 7)), (1, 9, 3, 5, (4, 6))]:
        d = w // heads
        qkv = torch.randn(n, 3 * w, hh, ww, dtype=torch.float64)
        q, kv = (t.requires_grad_() for t in qkv.split([w, 2 * w], 1))  # views, as the layer passes them
        rel_row = torch.randn(heads, (d + 1) // 2, span, dtype=torch.float64, requires_grad=True)
        rel_col = torch.randn(heads, d // 2, span, dtype=torch.float64, requires_grad=True)
        torch.library.opcheck(_shifted_op, (q, kv, rel_row, rel_col, heads, span))
        # the backward op on its own: opcheck of the forward traces it only with fake tensors
        _, attn, padded = _shifted_op(q, kv, rel_row, rel_col, heads, span)
        grad_out = torch.randn(n, w, hh, ww, dtype=torch.float64)
        args = (grad_out, q.detach(), padded, rel_row.detach(), rel_col.detach(), attn, span)
        torch.library.opcheck(_shifted_backward_op, args)


def test_offset_loop_compiles_to_one_graph():
    """Under torch.compile the offset loop is one node, not K^2 unrolled offsets: one graph, no break,
    and the compiled layer's values and gradients are the eager ones (backend aot_eager: dynamo and
    AOT autograd, without code generation)."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    m = _randomise(LocalAttention2d(6, 8, 2, 5, chunk_rows=SHIFTED))
    x = torch.randn(2, 6, 7, 9, requires_grad=True)
    g = torch.randn(2, 8, 7, 9)
    ref = m(x)
    ref_grads = torch.autograd.grad(ref, [x, *m.parameters()], g)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    y = compiled(x)
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=1e-6)
    for a, b in zip(torch.autograd.grad(y, [x, *m.parameters()], g), ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    graphs: list[torch.fx.GraphModule] = []

    def record(gm: torch.fx.GraphModule, _inputs: list[torch.Tensor]):  # dynamo's graph, as traced
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(m, backend=record, fullgraph=True)(x)
    targets = [str(node.target) for gm in graphs for node in gm.graph.nodes]
    assert sum("shifted_local_attention" in t for t in targets) == 1
    assert not any("addcmul" in t for t in targets), "the offset loop was unrolled into the graph"
    torch._dynamo.reset()


def test_eager_offset_loop_does_not_import_the_compiler():
    """Eager mode runs the offset loop without the custom op, whose first call imports torch._dynamo
    (measured: 1.2 s and 80 MB per process); a fresh interpreter shows it is not imported."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from trionet_dsl.nn.ops import LocalAttention2d\n"
        "m = LocalAttention2d(4, 4, 2, 3, chunk_rows=-1)\n"
        "m(torch.randn(1, 4, 5, 5, requires_grad=True)).sum().backward()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("rows", [SHIFTED, 2])
def test_local_cores_under_autocast(rows):
    """bf16 autocast as training runs it (forward inside autocast, backward outside): the offset loop
    and the bands compute in q's dtype while the embeddings stay fp32 parameters; values near the
    fp32 unfold's, and the same under torch.compile (aot_eager), whose custom op autocast does not reach."""
    import torch._dynamo

    torch.manual_seed(0)
    m = _randomise(LocalAttention2d(6, 8, 2, 3, chunk_rows=0))
    x = torch.randn(2, 6, 7, 9)
    ref = m(x)
    m.chunk_rows = rows
    runs = [m] if rows != SHIFTED else [m, torch.compile(m, backend="aot_eager", fullgraph=True)]
    for run in runs:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = run(x)
        assert y.dtype == torch.bfloat16
        y.float().square().sum().backward()
        assert m.rel_row.grad is not None and m.rel_row.grad.dtype == torch.float32
        torch.testing.assert_close(y.float(), ref, atol=0.1, rtol=0.05)
        m.zero_grad(set_to_none=True)
    torch._dynamo.reset()

"""How super operators read their weights: the view / strided-block paths (``Take``, the 1x1
expand's grid columns) against index_select of the same entries, values and gradients, float64."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trionet_dsl.nn.ops import SuperConv2d
from trionet_dsl.nn.ops.heads import Axis, Take, grid_index, index_axis, lead, row_axis, slice_rows
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.sampling import sample

axes = st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 6)).map(
    lambda t: Axis(stride=max(t[0], t[2]), blocks=t[1], size=t[2])
)


def entries(axis: Axis) -> list[int]:
    """The stored positions an Axis names, by the definition (a loop, not the code under test)."""
    return [b * axis.stride + j for b in range(axis.blocks) for j in range(axis.size)]


@settings(max_examples=60, deadline=None)
@given(rows=axes, cols=axes, extra_rows=st.integers(0, 3), extra_cols=st.integers(0, 3))
def test_take_reads_the_entries_an_index_select_reads_and_sends_their_gradients_back(
    rows, cols, extra_rows, extra_cols
):
    ri, ci = entries(rows), entries(cols)
    t = torch.randn(max(ri) + 1 + extra_rows, max(ci) + 1 + extra_cols, dtype=torch.float64, requires_grad=True)
    ref_t = t.detach().clone().requires_grad_()
    got = Take(rows, cols)(t)
    ref = ref_t.index_select(0, torch.tensor(ri)).index_select(1, torch.tensor(ci))
    assert torch.equal(got, ref)
    g = torch.randn_like(ref)
    got.backward(g)
    ref.backward(g)
    assert torch.equal(t.grad, ref_t.grad)


@settings(max_examples=40, deadline=None)
@given(rows=axes, cols=axes, n=st.integers(1, 3), pad=st.integers(0, 2))
def test_take_stack_is_the_concatenated_reads_with_the_same_gradients(rows, cols, n, pad):
    """q, k and v read in one copy (what the attention operators' forward uses) against each read by
    index_select and concatenated."""
    ri, ci = entries(rows), entries(cols)
    shape = (max(ri) + 1 + pad, max(ci) + 1 + pad)
    ts = [torch.randn(*shape, dtype=torch.float64, requires_grad=True) for _ in range(n)]
    refs = [t.detach().clone().requires_grad_() for t in ts]
    got = Take(rows, cols).stack(ts)
    ref = torch.cat([r.index_select(0, torch.tensor(ri)).index_select(1, torch.tensor(ci)) for r in refs], 0)
    assert torch.equal(got, ref)
    g = torch.randn_like(ref)
    got.backward(g)
    ref.backward(g)
    for t, r in zip(ts, refs, strict=True):
        assert torch.equal(t.grad, r.grad)


@settings(max_examples=60, deadline=None)
@given(axis=axes)
def test_index_axis_inverts_the_entries(axis):
    got = index_axis(entries(axis))
    assert got is not None and entries(got) == entries(axis)


@pytest.mark.parametrize("index", [[1, 2], [0, 2, 1], [0, 1, 4], [0, 1, 3, 4, 5], []])
def test_index_axis_refuses_what_is_not_blocks(index):
    assert index_axis(index) is None


@pytest.mark.parametrize("mode", ["multihead", "prefix"])
@pytest.mark.parametrize(("width", "heads"), [(8, 2), (12, 4), (16, 4), (16, 2), (8, 4)])
def test_row_axis_is_slice_rows(mode, width, heads):
    grid = (4, 8)
    w = torch.randn(32, 5)
    assert torch.equal(Take(row_axis(mode, grid, width, heads), lead(5))(w), slice_rows(w, mode, grid, width, heads))
    if mode == "multihead":
        assert entries(row_axis(mode, grid, width, heads)) == grid_index(grid, width, heads)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("index", [[0, 1, 2, 3, 8, 9, 10, 11], [0, 1, 2, 5, 3], list(range(6))])
def test_expand_grid_columns_equal_index_select_and_keep_the_memory_format(channels_last, index):
    torch.manual_seed(0)
    conv = SuperConv2d(16, 24, 1).double()
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
    ref_w = conv.weight.detach().clone().requires_grad_()
    idx = torch.tensor(index)
    x = torch.randn(2, len(index), 5, 5, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = conv(x, 24, in_index=idx)
    y_ref = torch.nn.functional.conv2d(x, ref_w.index_select(1, idx))
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(conv.weight.grad, ref_w.grad, rtol=1e-12, atol=1e-12)
    # the conv answers in the format an extracted model's conv would (its weight has the stored format)
    plain = torch.nn.Conv2d(len(index), 24, 1, bias=False).double()
    if channels_last:
        plain = plain.to(memory_format=torch.channels_last)
    assert y.stride() == plain(x).stride()
    if index != list(range(len(index))):  # leading columns are a view, as without an index
        assert conv.sliced_weight(24, len(index), idx).stride() == plain.weight.stride()


def test_a_fresh_index_tensor_each_call_is_read_afresh():
    conv = SuperConv2d(8, 4, 1).double()
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    for index in ([0, 1, 2], [0, 4, 5], [2, 3, 7]):  # same length, different entries: no stale cache hit
        idx = torch.tensor(index)
        torch.testing.assert_close(conv(x, 4, in_index=idx), torch.nn.functional.conv2d(x, conv.weight[:, idx]))


def test_supernet_keeps_the_extracted_models_memory_format(small_space):
    """channels_last throughout: after an attention operator (NCHW output) the grid-indexed expand must
    answer channels_last, as the extracted model's does, and the two must agree (train-mode forward)."""
    net = Supernet(small_space, seed=0).to(memory_format=torch.channels_last).train()
    arch = sample(small_space, random.Random(0))  # local (16, 4), axial (32, 4): grid-indexed
    net.activate(arch)
    sub = extract(net, arch).to(memory_format=torch.channels_last).train()
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    got, want = [], []
    for model, out in ((net, got), (sub, want)):
        hooks = [b.register_forward_hook(lambda m, i, o, out=out: out.append(o)) for b in model.blocks]
        y = model(x)
        for h in hooks:
            h.remove()
        out.append(y)
    for a, b in zip(got, want, strict=True):
        assert a.is_contiguous(memory_format=torch.channels_last) == b.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)

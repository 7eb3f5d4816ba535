"""The supernet refuses, before allocating anything, a space that would not fit the memory budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.nn.supernet import Supernet, default_memory_budget, memory_estimate
from trionet_dsl.space.loader import compile_space_text

SMALL = (Path(__file__).resolve().parents[2] / "spaces" / "trionet_small.space").read_text()


def test_default_budget_is_half_the_machine():
    assert 2**28 <= default_memory_budget()


def test_small_space_fits_and_estimate_is_positive():
    params, acts = memory_estimate(compile_space_text(SMALL))
    assert params > 0 and acts > 0
    Supernet(compile_space_text(SMALL), max_memory=params + acts)


def test_huge_input_is_refused_before_allocation():
    space = compile_space_text(SMALL.replace("input 3x32x32", "input 3x20000x20000"))
    with pytest.raises(SpaceError, match=r"GiB of activations for one sample, over the memory budget") as exc:
        Supernet(space, max_memory=64 * 2**30)
    assert "--max-memory" in (exc.value.hint or "")


def test_budget_names_the_parameter_memory():
    with pytest.raises(SpaceError, match=r"needs an estimated [0-9.]+ GiB for parameters"):
        Supernet(compile_space_text(SMALL), max_memory=10**6)


def test_activations_scale_with_the_training_batch():
    space = compile_space_text(SMALL)
    params, acts = memory_estimate(space)
    budget = params + 3 * acts  # room for three samples' activations, not four
    Supernet(space, max_memory=budget, batch_size=3)
    with pytest.raises(SpaceError, match=r"activations for a batch of 4, over the memory budget") as exc:
        Supernet(space, max_memory=budget, batch_size=4)
    assert f"{4 * acts / 2**30:.2f} GiB of activations" in str(exc.value)


def test_estimate_is_a_lower_bound_of_what_backward_keeps():
    """The block maps counted are kept for backward; the real step keeps more (BN, attention)."""
    import torch

    from trionet_dsl.space.sampling import uniform_op

    space = compile_space_text(SMALL)
    _, per_sample = memory_estimate(space)
    net = Supernet(space, seed=0)
    for kind in ("conv", "local", "axial"):
        net.activate(uniform_op(space, kind))
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor, seen: dict[int, int] = storages) -> torch.Tensor:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.randn(2, 3, 32, 32))
        assert sum(storages.values()) / 2 >= per_sample, kind

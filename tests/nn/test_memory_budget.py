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

"""Checkpoints are checked before anything uses them: schema, weights digest, finite weights,
shapes. Every damage is one SpaceError naming the file (the CLI's exit 2), never a traceback."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trionet_dsl import load
from trionet_dsl.lang.emit import emit_space
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.train.checkpoint import load_checkpoint, save_checkpoint, weights_digest

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny.space"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Path, dict]:
    space = load(TINY)
    net = Supernet(space, seed=0)
    payload = {
        "kind": "supernet",
        "space_text": emit_space(space.space),
        "arch_text": None,
        "sharing": "multihead",
        "config": {"seed": 0},
        "epoch": 1,
        "model": net.state_dict(),
        "optimizer": {},
        "scheduler": {},
        "metrics": [],
        "data": {},
    }
    p = tmp_path_factory.mktemp("ck") / "supernet.pt"
    save_checkpoint(p, payload)
    return p, torch.load(p, weights_only=True)


def _write(tmp_path: Path, data: dict, digest: bool = False) -> Path:
    p = tmp_path / "x.pt"
    if digest:
        data = dict(data, weights_sha256=weights_digest(data["model"]))
    torch.save(data, p)
    return p


def test_a_good_checkpoint_loads_and_carries_its_digest(good):
    p, raw = good
    ck = load_checkpoint(p)
    assert ck["weights_sha256"] == weights_digest(ck["model"]) == raw["weights_sha256"]


def test_a_flipped_value_in_the_weights_is_caught(good, tmp_path):
    _, raw = good
    model = {k: v.clone() for k, v in raw["model"].items()}
    key = next(k for k, v in model.items() if v.is_floating_point() and v.numel() > 4)
    model[key].view(-1)[3] += 1e-3  # what a flipped mantissa bit does
    with pytest.raises(SpaceError, match="do not match the digest"):
        load_checkpoint(_write(tmp_path, dict(raw, model=model)))


@pytest.mark.parametrize("field", ["model", "kind", "space_text", "epoch", "config"])
def test_a_missing_field_is_named(good, tmp_path, field):
    _, raw = good
    data = {k: v for k, v in raw.items() if k != field}
    with pytest.raises(SpaceError, match=f"damaged: '{field}'"):
        load_checkpoint(_write(tmp_path, data))


def test_empty_model_and_nan_weights_are_refused(good, tmp_path):
    _, raw = good
    with pytest.raises(SpaceError, match="damaged: 'model'"):
        load_checkpoint(_write(tmp_path, dict(raw, model={}, weights_sha256=None)))
    model = {k: v.clone() for k, v in raw["model"].items()}
    key = next(k for k, v in model.items() if v.is_floating_point())
    model[key].fill_(float("nan"))
    with pytest.raises(SpaceError, match=f"non-finite weights .* '{key}'"):
        load_checkpoint(_write(tmp_path, dict(raw, model=model), digest=True))


def test_wrong_shapes_are_a_clear_error(good, tmp_path):
    _, raw = good
    model = dict(raw["model"])
    key = next(k for k, v in model.items() if v.ndim == 4)
    model[key] = torch.zeros(1, 1, 1, 1)
    ck = load_checkpoint(_write(tmp_path, dict(raw, model=model), digest=True))
    with pytest.raises(SpaceError, match="do not fit this network"):
        Supernet.from_checkpoint(ck, load(TINY))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**32 - 1))
def test_random_mutations_never_give_a_traceback(good, tmp_path, seed):
    _, raw = good
    rng = random.Random(seed)
    data = dict(raw)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(sorted(data))
        action = rng.choice(["drop", "none", "str", "int", "list", "tensor"])
        if action == "drop":
            data.pop(key)
        else:
            data[key] = {"none": None, "str": "x", "int": -1, "list": [1], "tensor": torch.ones(2)}[action]
    p = _write(tmp_path, data)
    try:
        ck = load_checkpoint(p)
        Supernet.from_checkpoint(ck, load(TINY))
    except SpaceError:
        pass

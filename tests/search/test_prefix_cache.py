"""One-shot evaluation block by block with shared prefixes reused (``search.prefix_cache``) against
the whole network recalibrated and run batch by batch: the same accuracy and, after it, the same
supernet state (BN statistics included), bit for bit, whatever was evaluated before."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.search.evaluators import SupernetEvaluator
from trionet_dsl.search.evolution import Evolution
from trionet_dsl.search.prefix_cache import PrefixCache, _Entry
from trionet_dsl.space.loader import compile_space_text, load_space
from trionet_dsl.space.sampling import sample

HERE = Path(__file__).resolve().parent
BASIC = """
space basic_elastic {
  input 3x16x16
  classes 3
  stem { conv 3x3 8 stride 2 }
  block basic { op conv(kernel=3) | local(span=3) | axial; width 0.5x | 1.0x; heads 1 | 2 }
  stage s1 blocks 1 width 8 stride 1
  stage s2 blocks 1 | 2 width 16 stride 2
}
"""


def spaces():
    return {
        "tiny": load_space(HERE.parent / "data" / "tiny.space"),
        "tiny_elastic": load_space(HERE.parent / "data" / "tiny_elastic.space"),
        "basic_elastic": compile_space_text(BASIC, "<basic>"),
    }


SPACES = spaces()


def _data(space, tmp: Path):
    rng = np.random.default_rng(0)
    path = tmp / f"{space.name}.npz"
    np.savez(path, x=rng.integers(0, 255, size=(90, 16, 16, 3), dtype=np.uint8), y=np.arange(90) % 3)
    return load_dataset(str(path), space, 0.4, 0)


def _state(space) -> dict[str, torch.Tensor]:
    """A supernet state whose BN scales are away from their zero init (where every block is the
    identity and every arch scores alike)."""
    torch.manual_seed(0)
    state = Supernet(space, seed=0).state_dict()
    return {k: torch.rand_like(v) + 0.5 if v.ndim == 1 and k.endswith("weight") else v for k, v in state.items()}


def _evaluator(space, data, state, cache_bytes: int) -> SupernetEvaluator:
    net = Supernet(space, seed=1).to(memory_format=torch.channels_last)
    net.load_state_dict(state)
    return SupernetEvaluator(net, data, bn_batches=3, batch_size=16, seed=0, cache_bytes=cache_bytes)


def _sequence(space, seed: int, n: int) -> list:
    """Random archs, their mutations (shared prefixes) and repeats, in a mixed order."""
    rng = random.Random(seed)
    evo = Evolution(space, lambda a: (0, 0), None, seed=seed)
    archs = [sample(space, rng) for _ in range(3)]
    while len(archs) < n:
        archs.append(evo.mutate(rng.choice(archs)) if rng.random() < 0.8 else rng.choice(archs))
    return archs


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prefix")
    return {name: (sp, _data(sp, tmp), _state(sp)) for name, sp in SPACES.items()}


@settings(max_examples=6, deadline=None)
@given(name=st.sampled_from(sorted(SPACES)), seed=st.integers(0, 10_000))
def test_cached_evaluation_equals_the_full_recalibration(setups, name, seed):
    space, data, state = setups[name]
    full, cached = _evaluator(space, data, state, 0), _evaluator(space, data, state, 1 << 30)
    assert full.cache is None and cached.cache is not None
    accs = []
    for arch in _sequence(space, seed, 10):
        a, b = full(arch)["accuracy"], cached(arch)["accuracy"]
        assert a == b
        sa, sb = full.net.state_dict(), cached.net.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
        accs.append(a)
    assert cached.cache.hits > 0  # mutations and repeats shared prefixes
    assert len(set(accs)) > 1  # the archs really score differently (else equality proves little)


def test_a_tiny_bound_keeps_nothing_and_still_measures_the_same(setups):
    space, data, state = setups["tiny"]
    full, cached = _evaluator(space, data, state, 0), _evaluator(space, data, state, 1024)
    for arch in _sequence(space, 1, 4):
        assert full(arch) == cached(arch)
    assert cached.cache is None  # not even the stem fitted: the evaluator went back to the full path


def test_the_cache_evicts_least_recently_used_and_keeps_the_stem():
    def entry(n: int) -> _Entry:
        return _Entry([torch.zeros(n // 4)], [], {}, n)

    c = PrefixCache(max_bytes=100)
    c.put("a", entry(10))  # no stem yet: nothing is kept
    assert not c.entries
    assert c.put_stem(entry(40))
    c.put("a", entry(30))
    c.put("b", entry(30))
    assert c.get("a") is not None  # a is now the most recent
    c.put("c", entry(30))  # evicts b, never the stem
    assert list(c.entries) == ["a", "c"] and c.nbytes == 100 and c.stem is not None
    c.put("huge", entry(70))  # cannot fit beside the stem: refused, nothing evicted
    assert list(c.entries) == ["a", "c"]
    assert c.get("b") is None and c.hits == 1 and c.misses == 1
    assert not PrefixCache(max_bytes=10).put_stem(entry(40))


def test_streamed_validation_is_not_cached(tmp_path):
    from trionet_dsl.train.data.synthetic import make_image_folder

    space = SPACES["tiny"]
    root = make_image_folder(tmp_path / "imgs", classes=3, per_class=6, size=16, seed=0)
    data = load_dataset(str(root), space, 0.3, 0)
    ev = SupernetEvaluator(Supernet(space, seed=0), data, bn_batches=1, batch_size=8)
    assert ev.cache is None
    assert 0.0 <= ev(sample(space, random.Random(0)))["accuracy"] <= 1.0

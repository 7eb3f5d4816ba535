from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles: the default keeps the suite fast (each fuzz test tries a few hundred
# inputs); `pytest tests/lang/test_roundtrip.py -k fuzz --hypothesis-profile=long` is the
# nightly-sized run (README, "Limits"). A profile's max_examples raises the fuzz tests' own.
settings.register_profile("long", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py, for tests in any sub-folder
SPACES = ROOT / "spaces"


@pytest.fixture(scope="session")
def small_space():
    from trionet_dsl import load

    return load(SPACES / "trionet_small.space")


@pytest.fixture(scope="session")
def r50_space():
    from trionet_dsl import load

    return load(SPACES / "trionet_r50.space")

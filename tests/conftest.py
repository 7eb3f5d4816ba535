from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "spaces"


@pytest.fixture(scope="session")
def small_space():
    from trionet_dsl import load

    return load(SPACES / "trionet_small.space")


@pytest.fixture(scope="session")
def r50_space():
    from trionet_dsl import load

    return load(SPACES / "trionet_r50.space")

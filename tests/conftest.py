from __future__ import annotations

import sys
from pathlib import Path

import pytest

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

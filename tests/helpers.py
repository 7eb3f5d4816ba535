"""Small helpers shared by the language tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from trionet_dsl.lang.errors import SpaceError


def raised(fn: Callable[..., object], *args: object) -> SpaceError:
    """The SpaceError ``fn(*args)`` raises (the test fails if it raises nothing)."""
    with pytest.raises(SpaceError) as info:
        fn(*args)
    return info.value


def at(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the nth occurrence of ``needle`` in ``text``."""
    pos = -1
    for _ in range(nth + 1):
        pos = text.index(needle, pos + 1)
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1

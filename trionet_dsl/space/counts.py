"""Counts that may be astronomically large (a space's size), written for reports and people."""

from __future__ import annotations

import math

EXACT_DIGITS = 1000
"""Counts with more digits than this are written in scientific notation (Python refuses to print
an int of over 4,300 digits, and a 4,096-block space can have more architectures than that)."""


def sci(n: int) -> str:
    """``n`` as ``m.mmme+EEE`` without converting it to a float (which overflows past 1e308)."""
    if abs(n) < 10**300:  # a float holds it: the usual formatting (and rounding)
        return f"{n:.3e}"
    if n < 0:
        return "-" + sci(-n)
    exp = int(math.log10(n))
    mant = 10 ** (math.log10(n) - exp)
    if mant >= 9.9995:  # rounds up to 10.000
        exp, mant = exp + 1, mant / 10
    return f"{mant:.3f}e+{exp:02d}"


def count_value(n: int) -> int | str:
    """An exact count for a report: the int itself, or its scientific notation when it is too long."""
    return n if n < 10**EXACT_DIGITS else sci(n)


def count_text(n: int | str) -> str:
    """A count for people: ``1,234,567``, or scientific notation when it is too long."""
    return n if isinstance(n, str) else f"{n:,}" if n < 10**EXACT_DIGITS else sci(n)

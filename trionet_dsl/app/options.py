"""Command-line values shared by the jobs: counts with K/M/G suffixes, sizes, shares, threads."""

from __future__ import annotations

import re

from trionet_dsl.lang.errors import SpaceError

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_count(text: str | int | None, what: str = "value") -> int | None:
    """``300M`` -> 300_000_000; ``1.5G``; plain integers; None stays None."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)\s*", str(text))
    if not m:
        raise SpaceError(f"cannot read {what} '{text}'", hint="write a number with an optional K/M/G suffix, e.g. 300M")
    return round(float(m.group(1)) * _SUFFIX[m.group(2).upper()])


def parse_size(text: str | int | None) -> int | tuple[int, int] | None:
    """``--image-size``: ``224`` or ``224x192`` (height x width); None stays None."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]+)\s*(?:[xX]\s*([0-9]+)\s*)?", str(text))
    if not m or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise SpaceError(f"cannot read --image-size '{text}'", hint="write S (square) or HxW, e.g. 224 or 160x192")
    return int(m.group(1)) if m.group(2) is None else (int(m.group(1)), int(m.group(2)))


def check_val_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise SpaceError(
            f"--val-fraction {val_fraction} is not a share of the data",
            hint="use a number strictly between 0 and 1, e.g. 0.2 (or give --val FILE)",
        )


def set_threads(threads: int | None) -> None:
    """``--threads N``: torch's intra-op threads (None: torch's default, one per core)."""
    if threads is None:
        return
    if threads < 1:
        raise SpaceError(f"--threads {threads} must be >= 1")
    import torch

    torch.set_num_threads(threads)


def check_seed(seed: int) -> None:
    """Seeds go to torch generators, which take 0 <= seed < 2**63."""
    if not 0 <= seed < 2**63:
        raise SpaceError(f"--seed {seed} is out of range", hint="use an integer from 0 to 2**63 - 1")

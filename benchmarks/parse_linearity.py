"""Is the language front end linear? µs per KB of parse + resolve for hostile input shapes.

    python benchmarks/parse_linearity.py [KB ...]     # default sizes: 10 100 1000

For each shape (many comment lines, trailing comments on many lines, many distinct stage
names, many blocks, long lines) it builds inputs of about the given sizes, times
``compile_space_text`` (text -> IR -> resolved space; best of 3) and prints µs per KB and the
ratio of µs/KB between consecutive sizes (1.0 is linear; the goal is under 1.5).
Inputs that the language refuses by a stated limit (e.g. more than 4,096 blocks) are timed
up to the refusal, which must be just as cheap.
"""

from __future__ import annotations

import sys
import time

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.space.loader import compile_space_text

HEAD = "space s {\n  input 3x32x32\n  classes 10\n"
HEAD += "  block bottleneck expansion 2 {\n    op conv(kernel=3) | axial\n    width 0.5x | 1.0x\n    heads 2 | 4\n  }\n"


STEM = "  stem { conv 3x3 16 stride 2 }\n"


def _fill(line: str, kb: int, tail: str = "}\n", first: str = STEM) -> str:
    n = max(1, (kb * 1024 - len(HEAD) - len(first)) // len(line))
    return HEAD + first + line * n + tail


def comment_lines(kb: int) -> str:
    return _fill(
        "  # a comment line that says nothing at all, over and over\n",
        kb,
        first=STEM + "  stage s1 blocks 1 width 16\n",
    )


def trailing_comments(kb: int) -> str:
    # statements each ending in a comment: semicolon-separated stem layers (no block limit)
    first = "  stage s1 blocks 1 width 16  # first\n  stem {\n"
    return _fill("    maxpool 1x1 stride 1  # trailing\n", kb, tail="  }\n}\n", first=first)


def stage_names(kb: int) -> str:
    n = max(1, (kb * 1024 - len(HEAD)) // 28)
    return HEAD + STEM + "".join(f"  stage st{i:07d} blocks 1 width 16\n" for i in range(n)) + "}\n"


def many_blocks(kb: int) -> str:
    first = STEM + "  stage s1 blocks 4096 width 16 {\n"
    n = max(1, (kb * 1024 - len(HEAD) - len(first)) // 30)
    body = "".join(f"    block {i % 4096} {{ op axial }}\n" for i in range(n))
    return HEAD + first + body + "  }\n}\n"


def long_lines(kb: int) -> str:
    # one line of ';'-separated stem layers
    line = "  stem { " + "maxpool 1x1 stride 1; " * (kb * 1024 // 22) + "}\n"
    return HEAD + line + "  stage s1 blocks 1 width 16\n}\n"


SHAPES = {
    "comment lines": comment_lines,
    "trailing comments": trailing_comments,
    "distinct stage names": stage_names,
    "many blocks": many_blocks,
    "long lines": long_lines,
}


def time_us(text: str, repeats: int = 3) -> tuple[float, str]:
    best = float("inf")
    outcome = "ok"
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            compile_space_text(text)
            outcome = "ok"
        except SpaceError as exc:
            outcome = "refused: " + str(exc).splitlines()[0][:60]
        best = min(best, time.perf_counter() - t0)
    return best * 1e6, outcome


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [10, 100, 1000]
    compile_space_text(HEAD + "  stage s1 blocks 1 width 16\n}\n")  # warm-up: LALR tables
    worst = 0.0
    for name, make in SHAPES.items():
        prev = None
        cells = []
        for kb in sizes:
            text = make(kb)
            us, outcome = time_us(text)
            per_kb = us / (len(text) / 1024)
            ratio = per_kb / prev if prev else None
            if ratio:
                worst = max(worst, ratio)
            prev = per_kb
            cell = f"{len(text) / 1024:7.0f} KB {per_kb:7.1f} µs/KB"
            cells.append(cell + (f" (x{ratio:.2f})" if ratio else "         "))
            if outcome != "ok":
                cells[-1] += f" [{outcome}]"
        print(f"{name:22s} " + "  ".join(cells))
    print(f"worst ratio of µs/KB between consecutive sizes: {worst:.2f} (1.0 = linear)")


if __name__ == "__main__":
    main()

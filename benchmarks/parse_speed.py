"""Parse speed: mean milliseconds to parse spaces/trionet_r50.space (goal: well under 50 ms).

    python benchmarks/parse_speed.py [N]      # N parses after one warm-up (default 200)

Measures ``parse`` (text -> IR, with source map and comments) and, separately,
``compile_space_text`` (parse + semantic resolution).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from trionet_dsl.lang.parser import parse
from trionet_dsl.space.loader import compile_space_text

SPACE = Path(__file__).resolve().parent.parent / "spaces" / "trionet_r50.space"


def mean_ms(fn, text: str, n: int) -> float:
    fn(text)  # warm-up: builds the LALR tables once per process
    t0 = time.perf_counter()
    for _ in range(n):
        fn(text)
    return (time.perf_counter() - t0) * 1000 / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    text = SPACE.read_text()
    print(f"parse {SPACE.name}: {mean_ms(parse, text, n):.3f} ms mean over {n} parses")
    print(f"parse + resolve {SPACE.name}: {mean_ms(compile_space_text, text, n):.3f} ms mean over {n} runs")


if __name__ == "__main__":
    main()

"""Architectures costed per second by the analytic cost model (goal: >= 10,000/s).

python benchmarks/cost_model_speed.py
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from trionet_dsl import load
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.sampling import sample

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    for name in ("trionet_r50", "trionet_small"):
        space = load(ROOT / "spaces" / f"{name}.space")
        rng = random.Random(0)
        archs = [sample(space, rng) for _ in range(20000)]
        t0 = time.perf_counter()
        model = CostModel(space)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        for a in archs:
            model(a)
        dt = time.perf_counter() - t0
        print(f"{name}: {len(archs) / dt:,.0f} archs/s (tables built once in {build * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()

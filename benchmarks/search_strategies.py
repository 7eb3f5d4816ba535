"""Search strategies on a synthetic accuracy table: hit rates and repeated queries.

For each seed a fresh table (``trionet_dsl.search.tabular.TableEvaluator``, seed = run
seed) over ``spaces/trionet_small.space`` (15^6 = 11.4 M archs); each strategy searches it
with a budget of queries. Printed per strategy: how often the arch it returns is in the
space's exact top 1% / top 0.1% (noiseless score), the mean gap of its best to the optimum
(in table points, 1000 per block), proposals answered from the history (no evaluation
spent) and archs evaluated twice (must be 0). Evolution runs with tournaments of 5 and 10.

    python benchmarks/search_strategies.py --seeds 20 --budget 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

from trionet_dsl import load
from trionet_dsl.search.base import Limits, arch_key
from trionet_dsl.search.driver import run_search
from trionet_dsl.search.tabular import TableEvaluator
from trionet_dsl.space.cost import CostModel

SPACE = Path(__file__).resolve().parent.parent / "spaces" / "trionet_small.space"
STRATEGIES: list[tuple[str, str, dict]] = [
    ("random", "random", {}),
    ("evolution (tournament 5)", "evolution", {"sample_size": 5}),
    ("evolution (tournament 10)", "evolution", {"sample_size": 10}),
    ("tpe", "tpe", {}),
    ("nsga2", "nsga2", {}),
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args(argv)
    space = load(SPACE)
    cost = CostModel(space)
    tables = [TableEvaluator(space, seed=s) for s in range(args.seeds)]
    cuts = [(t.top_threshold(0.01), t.top_threshold(0.001), t.optimum()) for t in tables]
    print(f"space {space.name}: {space.size:,} archs; budget {args.budget}, batch {args.batch}, {args.seeds} seeds")
    print(f"{'strategy':28s} {'top 1%':>7s} {'top 0.1%':>8s} {'gap':>6s} {'answered':>9s} {'twice':>6s}")
    for label, name, opts in STRATEGIES:
        hit1 = hit01 = twice = answered = 0
        gaps = []
        for s, (table, (t1, t01, opt)) in enumerate(zip(tables, cuts, strict=True)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = run_search(
                    space,
                    name,
                    table,
                    cost,
                    Limits(),
                    args.budget,
                    seed=s,
                    progress=False,
                    strategy_options=opts,
                    batch=args.batch,
                )
            keys = [arch_key(o.arch) for o in res.history]
            twice += len(keys) - len(set(keys))
            answered += res.repeats
            score = table.score(res.best.arch)
            hit1 += score >= t1
            hit01 += score >= t01
            gaps.append(opt - score)
        n = args.seeds
        print(
            f"{label:28s} {hit1 / n:7.2f} {hit01 / n:8.2f} {statistics.mean(gaps):6.0f} {answered / n:9.1f} {twice:6d}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()

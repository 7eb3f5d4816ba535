"""Does ``torch.compile`` speed up an extracted/built model's training step on CPU?

For the all-conv, all-local and all-axial archs of ``trionet_small`` (largest widths), a model
from ``build`` runs forward+backward eagerly and compiled (``torch.compile``, default inductor
backend). Compile time (the first compiled step, which traces and compiles forward and backward)
is reported apart from the step time (median of ``--steps`` interleaved steps after warm-up).
Graph counts come from dynamo's counters: more than one graph per model means graph breaks, and
a second batch size afterwards shows whether a shape change recompiles.

    python benchmarks/compile_speedup.py [--threads 2] [--steps 5] [--batch 16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch._dynamo

from trionet_dsl import load
from trionet_dsl.nn.network import build
from trionet_dsl.space.sampling import uniform_op

ROOT = Path(__file__).resolve().parent.parent


def step(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model(x).sum().backward()
    dt = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return dt


def graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    space = load(ROOT / "spaces" / "trionet_small.space")
    x = torch.randn(a.batch, 3, 32, 32)
    x2 = torch.randn(a.batch // 2, 3, 32, 32)
    print(f"trionet_small, batch {a.batch}, 32x32, fwd+bwd, {a.threads} threads, torch {torch.__version__}")
    cols = f"{'eager ms':>9} {'compiled ms':>12} {'speed-up':>9} {'compile s':>10} {'graphs':>7} {'+recompile':>11}"
    print(f"{'arch':6} {cols}")
    for kind in ("conv", "local", "axial"):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        eager = build(space, uniform_op(space, kind), seed=0).train()
        compiled = torch.compile(build(space, uniform_op(space, kind), seed=0).train())
        t0 = time.perf_counter()
        step(compiled, x)
        compile_s = time.perf_counter() - t0
        n_graphs = graphs()
        step(eager, x)
        te, tc = [], []
        for _ in range(a.steps):
            te.append(step(eager, x))
            tc.append(step(compiled, x))
        step(compiled, x2)  # a new batch size: does dynamo recompile (dynamic shapes)?
        me, mc = statistics.median(te), statistics.median(tc)
        extra = graphs() - n_graphs
        print(f"{kind:6} {me * 1e3:9.1f} {mc * 1e3:12.1f} {me / mc:9.2f} {compile_s:10.1f} {n_graphs:7d} {extra:11d}")


if __name__ == "__main__":
    main()

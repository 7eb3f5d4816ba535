"""Forward+backward time of a sampled sub-network inside the supernet vs its extracted model.

Same input (batch 64, 32x32, trionet_small), same arch, both in train mode, on CPU; prints
the ratio supernet / extracted (goal <= 1.05) for conv-only, local-only, axial-only and
mixed archs, each the median of 20 interleaved steps after warm-up, measured in one run.

    python benchmarks/supernet_vs_extracted.py [--threads 2] [--steps 20] [--batch 64]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch

from trionet_dsl import load
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.sampling import sample, uniform_op

ROOT = Path(__file__).resolve().parent.parent


def one_step(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model(x).sum().backward()
    dt = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return dt


def paired_times(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor, steps: int) -> tuple[float, float]:
    """Median step times of a and b, interleaved step by step so machine drift hits both alike."""
    for _ in range(2):  # warm-up
        one_step(a, x), one_step(b, x)
    ta, tb = [], []
    for _ in range(steps):
        ta.append(one_step(a, x))
        tb.append(one_step(b, x))
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = load(ROOT / "spaces" / "trionet_small.space")
    net = Supernet(space, seed=0).to(memory_format=torch.channels_last).train()
    x = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    archs = {k: uniform_op(space, k) for k in ("conv", "local", "axial")}
    archs["mixed"] = sample(space, random.Random(1))
    print(f"{'arch':8} {'supernet ms':>12} {'extracted ms':>13} {'ratio':>6}")
    for name, arch in archs.items():
        net.activate(arch)
        sub = extract(net, arch).to(memory_format=torch.channels_last).train()
        a, b = paired_times(net, sub, x, args.steps)
        print(f"{name:8} {a * 1e3:12.1f} {b * 1e3:13.1f} {a / b:6.3f}")


if __name__ == "__main__":
    main()

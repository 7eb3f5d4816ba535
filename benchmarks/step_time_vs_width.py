"""Supernet training-step time across sub-network widths: it should follow the
sub-network's FLOPs, not the supernet's (slicing, not masking).

For each operator kind, the narrowest and the widest all-<kind> archs of trionet_small
(batch 64, 32x32, CPU): step time ratio vs FLOPs ratio, measured in one run.

    python benchmarks/step_time_vs_width.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from trionet_dsl import load
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.sampling import uniform_op

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    torch.set_num_threads(2)
    space = load(ROOT / "spaces" / "trionet_small.space")
    cost = CostModel(space)
    net = Supernet(space, seed=0).to(memory_format=torch.channels_last).train()
    x = torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    print(f"{'arch':14} {'MFLOPs':>8} {'step ms':>8}")
    for kind in ("conv", "local", "axial"):
        rows = []
        for largest in (False, True):
            arch = uniform_op(space, kind, largest=largest)
            net.activate(arch)
            times = []
            for i in range(8):
                t0 = time.perf_counter()
                net(x).sum().backward()
                if i >= 2:
                    times.append(time.perf_counter() - t0)
            ms = statistics.median(times) * 1e3
            fl = cost(arch)[1] / 1e6
            rows.append((fl, ms))
            print(f"{kind + (' widest' if largest else ' narrowest'):14} {fl:8.2f} {ms:8.1f}")
        print(f"  {kind}: FLOPs ratio {rows[1][0] / rows[0][0]:.2f}, step-time ratio {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()

"""Forward+backward time of a sub-network inside the supernet vs its extracted model.

Same input, same arch, both in train mode and channels_last, on CPU; prints the ratio
supernet / extracted (goal <= 1.05) for all-conv, all-local, all-axial (the largest of each) and
a sampled mixed arch, for ``trionet_small`` (32x32) at each ``--batch`` and ``trionet_r50``
(224x224) at ``--r50-batch``. Each ratio is the median of ``--steps`` (``--r50-steps``) per-pair
ratios: one step of each model, the two interleaved after warm-up and their order swapped from one
pair to the next (a fixed order let whichever ran second inherit the first's warm caches and its
freed memory, and a drift of the machine between pairs cancels out of a pair's ratio); every
setting is measured in one run;
``--rounds R`` measures them all R times over (round after round, so machine drift hits every
setting) and prints each round's ratio, their median and spread. Besides wall-clock time (the
goal's measure) it prints the ratio of process CPU time, which a machine shared with other jobs
disturbs less (time spent waiting for a core is not counted).

    python benchmarks/supernet_vs_extracted.py [--threads 2] [--steps 20] [--batch 64 256]
        [--r50-batch 2] [--r50-steps 5] [--rounds 2]

``--batch`` with no sizes skips ``trionet_small``, ``--r50-batch 0`` skips ``trionet_r50``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trionet_dsl import load
from trionet_dsl.lang.ir import Arch
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.sampling import sample, uniform_op

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("conv", "local", "axial", "mixed")


def one_step(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(wall, process CPU) seconds of one forward+backward."""
    t0, c0 = time.perf_counter(), time.process_time()
    model(x).sum().backward()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    model.zero_grad(set_to_none=True)
    return dt, dc


@dataclass
class Setting:
    """One (space, batch, arch) pair of models and the ratios measured for it, round by round."""

    label: str
    net: Supernet
    sub: torch.nn.Module
    arch: Arch
    x: torch.Tensor
    steps: int
    warmup: int
    rounds: list[tuple[float, float, float, float]] = field(default_factory=list)
    # per round: (super ms, sub ms, median wall ratio, median cpu ratio)

    def measure(self) -> tuple[float, float, float, float]:
        """Median step times and median per-pair ratios, supernet over extracted model."""
        self.net.activate(self.arch)
        for _ in range(self.warmup):
            one_step(self.net, self.x), one_step(self.sub, self.x)
        ta, tb, wall, cpu = [], [], [], []
        for i in range(self.steps):
            if i % 2 == 0:
                (a, c), (b, d) = one_step(self.net, self.x), one_step(self.sub, self.x)
            else:
                (b, d), (a, c) = one_step(self.sub, self.x), one_step(self.net, self.x)
            ta.append(a), tb.append(b), wall.append(a / b), cpu.append(c / d)
        got = (
            statistics.median(ta) * 1e3,
            statistics.median(tb) * 1e3,
            statistics.median(wall),
            statistics.median(cpu),
        )
        self.rounds.append(got)
        return got


def settings(space_name: str, batches: list[int], steps: int, warmup: int, seed: int) -> list[Setting]:
    space = load(ROOT / "spaces" / f"{space_name}.space")
    inp = space.space.input
    net = Supernet(space, seed=seed).to(memory_format=torch.channels_last).train()
    archs = {k: uniform_op(space, k) for k in KINDS[:3]}
    archs["mixed"] = sample(space, random.Random(1))
    out = []
    for name, arch in archs.items():
        sub = extract(net, arch).to(memory_format=torch.channels_last).train()
        for batch in batches:
            x = torch.randn(batch, inp.channels, inp.height, inp.width).contiguous(memory_format=torch.channels_last)
            out.append(Setting(f"{space_name} b{batch} {name}", net, sub, arch, x, steps, warmup))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="steps per ratio, trionet_small")
    ap.add_argument("--batch", type=int, nargs="*", default=[64, 256], help="trionet_small batch sizes (none: skip)")
    ap.add_argument("--r50-batch", type=int, default=2, help="trionet_r50 batch at 224x224 (0: skip)")
    ap.add_argument("--r50-steps", type=int, default=5, help="steps per ratio, trionet_r50 (each takes seconds)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    todo = settings("trionet_small", args.batch, args.steps, 2, args.seed) if args.batch else []
    if args.r50_batch > 0:
        todo += settings("trionet_r50", [args.r50_batch], args.r50_steps, 1, args.seed)
    print(f"{'round':5} {'setting':26} {'supernet ms':>12} {'extracted ms':>13} {'ratio':>6} {'cpu ratio':>9}")
    for r in range(args.rounds):
        for s in todo:
            a, b, w, c = s.measure()
            print(f"{r + 1:5} {s.label:26} {a:12.1f} {b:13.1f} {w:6.3f} {c:9.3f}", flush=True)
    if args.rounds > 1:
        print(f"\n{'setting':26} {'ratio median':>12} {'min':>6} {'max':>6} {'cpu ratio median':>16}")
        for s in todo:
            ratios = [w for _, _, w, _ in s.rounds]
            cpu = statistics.median(c for _, _, _, c in s.rounds)
            print(f"{s.label:26} {statistics.median(ratios):12.3f} {min(ratios):6.3f} {max(ratios):6.3f} {cpu:16.3f}")


if __name__ == "__main__":
    main()

"""Search's inner loop: one-shot evaluations (BN recalibration + validation) per minute.

Evaluates the same sampled sub-networks of ``trionet_small`` on the bundled digits (20%
validation split: 359 images) with each setting, interleaved arch by arch so a busy machine
slows every setting alike, and prints archs/minute and the ratio to the first setting. The
settings are BN-recalibration batch counts (``--bn-batches`` of ``trionet search``; each batch
is ``CALIBRATION_BATCH_SIZE`` = 128 training images run forward in train mode); an untrained
supernet is enough, as the cost of an evaluation does not depend on the weights.

    python benchmarks/search_throughput.py [--archs 12] [--settings 8,2] [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch

from trionet_dsl import load
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.search.evaluators import SupernetEvaluator
from trionet_dsl.space.sampling import sample

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--settings", default="8,2", help="BN-recalibration batch counts, the first is the baseline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = load(ROOT / "spaces" / "trionet_small.space")
    data = load_dataset("digits", space, val_fraction=0.2, seed=args.seed)
    net = Supernet(space, seed=args.seed).to(memory_format=torch.channels_last)
    settings = [int(s) for s in args.settings.split(",")]
    evaluators = {n: SupernetEvaluator(net, data, bn_batches=n, seed=args.seed) for n in settings}
    rng = random.Random(args.seed)
    archs = [sample(space, rng) for _ in range(args.archs)]
    seconds: dict[int, list[float]] = {n: [] for n in settings}
    for arch in archs:
        for n, ev in evaluators.items():
            t = time.perf_counter()
            ev(arch)
            seconds[n].append(time.perf_counter() - t)
    base = sum(seconds[settings[0]])
    print(f"trionet_small on digits ({len(data.val_x)} validation images), {len(archs)} archs, {args.threads} threads")
    print("| BN batches | archs/min | median s/arch | speed-up |")
    print("|---|---|---|---|")
    for n in settings:
        total = sum(seconds[n])
        print(f"| {n} | {60 * len(archs) / total:.1f} | {statistics.median(seconds[n]):.3f} | {base / total:.2f}x |")


if __name__ == "__main__":
    main()

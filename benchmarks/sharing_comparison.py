"""Multi-head Sharing vs channel-prefix sharing: how well do the shared weights serve sub-networks?

Trains the supernet of ``trionet_small`` twice on the bundled digits with the same seed,
schedule and sampled sub-network sequence — once per ``sharing`` mode — then measures the
one-shot accuracy (inherited weights, BatchNorm recalibrated) of the same sub-networks in
both: ones whose attention blocks do not use the largest (width, heads), where the two
modes differ. Prints mean / min accuracy per mode and their difference, measured in one run.

    python benchmarks/sharing_comparison.py [--epochs 8] [--archs 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

import torch

from trionet_dsl import load
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.search.evaluators import SupernetEvaluator
from trionet_dsl.space.sampling import sample
from trionet_dsl.train import TrainConfig, train
from trionet_dsl.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--archs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    space = load(ROOT / "spaces" / "trionet_small.space")
    data = load_dataset("digits", space, val_fraction=0.2, seed=args.seed)
    rng = random.Random(args.seed + 1)
    archs = []
    while len(archs) < args.archs:  # attention blocks below their largest (width, heads): where sharing matters
        a = sample(space, rng)
        attn = [b for b in a.blocks if b.op.kind != "conv"]
        if attn and any(b.width < max(space.by_key[b.key].widths) or b.heads != 4 for b in attn):
            archs.append(a)
    results: dict[str, list[float]] = {}
    for sharing in ("multihead", "prefix"):
        cfg = TrainConfig(epochs=args.epochs, batch_size=32, lr=0.2, seed=args.seed, sharing=sharing)
        with tempfile.TemporaryDirectory() as out:
            train(space, data, cfg, out, progress=False, overwrite=True)
            net = Supernet.from_checkpoint(load_checkpoint(Path(out) / "supernet.pt"), space)
        net = net.to(memory_format=torch.channels_last)
        ev = SupernetEvaluator(net, data, bn_batches=8, seed=args.seed)
        results[sharing] = [ev(a)["accuracy"] for a in archs]
        accs = results[sharing]
        print(
            f"{sharing:9}: one-shot acc over {len(accs)} archs: mean {statistics.mean(accs):.4f} "
            f"median {statistics.median(accs):.4f} min {min(accs):.4f}",
            flush=True,
        )
    wins = sum(m > p for m, p in zip(results["multihead"], results["prefix"], strict=True))
    ties = sum(m == p for m, p in zip(results["multihead"], results["prefix"], strict=True))
    print(
        f"multihead - prefix: mean {statistics.mean(results['multihead']) - statistics.mean(results['prefix']):+.4f};"
        f" multihead better on {wins}/{len(archs)} archs, tied on {ties}"
    )


if __name__ == "__main__":
    main()

"""Supernet training images/s with 1 process vs 2 data-parallel processes (gloo, CPU), one run.

Each setting is one real ``trionet train`` command (``--json``; its epoch's ``images_per_s``
counts the training steps only): the ``trionet_small`` supernet, Hierarchical Sampling, global
batch 32, ``--sync-bn``, one epoch over a digits subset (``--images``, val fraction 0.2):

* 1 process, 1 thread (``--threads 1``);
* 1 process, 2 threads (``--threads 2``): the same cores as two processes;
* 2 processes x 1 thread (``--nproc 2 --threads 1``: torchrun's engine, 16 images per rank).

Settings are interleaved over ``--rounds`` rounds (medians printed), so a load change on a shared
machine hits all of them alike. The 2-process run's final weights are compared with the
1-process run's (same seed), beside the difference 1 vs 2 threads make in one process: float32
sums in another order, which 20 steps at lr 0.05 amplify (both differences are of that kind).

    python benchmarks/ddp_throughput.py [--images 800] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "1 process, 1 thread": ["--threads", "1"],
    "1 process, 2 threads": ["--threads", "2"],
    "2 processes x 1 thread": ["--threads", "1", "--nproc", "2"],
}


def run(data: Path, out: Path, extra: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "trionet_dsl", "train", "trionet_small", "--data", str(data), "--out", str(out)]
    cmd += ["--epochs", "1", "--batch-size", "32", "--sync-bn", "--seed", "0", "--overwrite", "--json", *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    start = proc.stdout.index("{")  # rank 0's JSON summary (torchrun logs go to stderr)
    summary = json.loads(proc.stdout[start : proc.stdout.rindex("}") + 1])
    return float(summary["epochs"][0]["images_per_s"])


def max_weight_difference(a: Path, b: Path) -> float:
    from trionet_dsl.train.checkpoint import load_checkpoint

    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].is_floating_point())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=800, help="digits images used (val fraction 0.2)")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    from sklearn.datasets import load_digits

    d = load_digits()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "digits.npz"
        np.savez(data, x=(d.images[: a.images] * 255 / 16).astype(np.uint8), y=d.target[: a.images])
        ips: dict[str, list[float]] = {k: [] for k in SETTINGS}
        for _ in range(a.rounds):
            for name, extra in SETTINGS.items():
                ips[name].append(run(data, Path(tmp) / name.replace(" ", "_"), extra))
        one, two = Path(tmp) / "1_process,_1_thread", Path(tmp) / "2_processes_x_1_thread"
        diff = max_weight_difference(one / "supernet.pt", two / "supernet.pt")
        floor = max_weight_difference(one / "supernet.pt", Path(tmp) / "1_process,_2_threads" / "supernet.pt")
    train_images = a.images - round(a.images * 0.2)
    print(
        f"trionet_small supernet, hierarchical sampling, --sync-bn, global batch 32, one epoch of "
        f"{train_images // 32} steps, torch {torch.__version__}, {os.cpu_count()} CPU(s), medians of {a.rounds} rounds"
    )
    base1 = statistics.median(ips["1 process, 1 thread"])
    base2 = statistics.median(ips["1 process, 2 threads"])
    print(f"{'setting':24} {'images/s':>9} {'vs 1p1t':>8} {'vs 1p2t':>8}  rounds")
    for name, values in ips.items():
        m = statistics.median(values)
        rounds = " ".join(f"{v:.1f}" for v in values)
        print(f"{name:24} {m:9.1f} {m / base1:7.2f}x {m / base2:7.2f}x  {rounds}")
    print(
        f"max |weight difference| after the epoch: 2 processes vs 1 process {diff:.2e}; "
        f"1 process with 2 threads vs 1 thread {floor:.2e} (float32 reduction order alone)"
    )


if __name__ == "__main__":
    main()

"""``trionet search`` in 1 vs N processes (torchrun, gloo): archs/minute, same history.

Trains a one-step supernet checkpoint of ``trionet_small`` on digits (an evaluation costs the
same whatever the weights), then runs the same random search (``--batch`` = the largest N, so
every run asks the same batches) with ``--nproc 1`` and ``--nproc N``, alternated ``--rounds``
times so a busy machine slows both alike. Wall time includes process start-up and loading (what
a user waits for). Prints archs/min, the ratio to one process, and whether every run wrote the
same history (it must).

    python benchmarks/parallel_search.py [--nproc 1,2] [--budget 16] [--threads 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _trionet(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "trionet_dsl", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", default="1,2", help="process counts, the first is the baseline")
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    counts = [int(n) for n in args.nproc.split(",")]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        _trionet("train", "trionet_small", "--data", "digits", "--steps", "1", "--out", str(t / "run"),
                 "--no-progress", "--threads", str(args.threads), "--device", args.device, env=env)  # fmt: skip
        seconds: dict[int, list[float]] = {n: [] for n in counts}
        histories: set[str] = set()
        for r in range(args.rounds):
            for n in counts if r % 2 == 0 else counts[::-1]:
                out = t / f"n{n}_r{r}.arch"
                start = time.perf_counter()
                _trionet("search", "trionet_small", "--checkpoint", str(t / "run" / "supernet.pt"), "--strategy",
                         "random", "--budget", str(args.budget), "--batch", str(max(counts)), "--nproc", str(n),
                         "--threads", str(args.threads), "--device", args.device, "--out", str(out), "--no-progress",
                         env=env)  # fmt: skip
                seconds[n].append(time.perf_counter() - start)
                histories.add(out.with_suffix(".history.jsonl").read_text())
    base = sum(seconds[counts[0]]) / len(seconds[counts[0]])
    print(f"trionet_small on digits, random search, budget {args.budget}, --batch {max(counts)}, "
          f"{args.threads} thread(s)/process, {args.rounds} rounds, device {args.device}")  # fmt: skip
    print("| processes | archs/min | mean s/search | speed-up |")
    print("|---|---|---|---|")
    for n in counts:
        mean = sum(seconds[n]) / len(seconds[n])
        print(f"| {n} | {60 * args.budget / mean:.1f} | {mean:.1f} | {base / mean:.2f}x |")
    print(f"same history in every run: {len(histories) == 1}")


if __name__ == "__main__":
    main()

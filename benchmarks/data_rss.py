"""Memory and speed of streamed image folders: peak RSS for 2,000 vs 20,000 images, images/s with 0/1/2 workers.

Generates two ImageNet-layout JPEG folders (synthetic 64x64 gratings, 10 classes, one tree
split 80/20) in a temp dir, then runs one training epoch of data loading (random-resized crop
+ flip, normalised batches; ``--model`` adds a tiny conv step per batch) for each in a fresh
subprocess, which reports its own peak RSS and its DataLoader workers' (``getrusage``
``ru_maxrss`` of ``RUSAGE_SELF`` and, after the workers exited, ``RUSAGE_CHILDREN``: the largest
worker). The goal: the 20,000-image peak within 10% of the 2,000-image one. Then images/s of
one epoch over the 2,000-image folder with 0, 1 and 2 workers (each in its own subprocess, so
they share nothing), same batches in each (per-sample seeding).

    python benchmarks/data_rss.py                      # 2k vs 20k, 2 workers; then 0/1/2 workers
    python benchmarks/data_rss.py --sizes 2000 20000 --workers 2 --model --image-size 64
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(folder: str, workers: int, batch: int, image_size: int, model: bool, threads: int) -> None:
    """One epoch of loading (in this fresh process); prints a JSON line."""
    import torch

    from trionet_dsl.train.data import DataConfig, iterate, load_data

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data = load_data(DataConfig(source=folder, image_size=(image_size, image_size), channels=3), workers=workers)
    indexed = time.perf_counter() - t0
    net = opt = None
    if model:
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, data.num_classes),
        )
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
    seen, checksum = 0, 0.0
    t1 = time.perf_counter()
    for x, y in iterate(data, "train", batch, 0, 0, drop_last=True):
        if net is not None and opt is not None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        seen += len(y)
        checksum += float(x[:, :, 0, 0].sum())
    seconds = time.perf_counter() - t1
    data.close()  # join the workers, so RUSAGE_CHILDREN counts them
    print(
        json.dumps(
            {
                "images": seen,
                "seconds": seconds,
                "index_and_stats_s": indexed,
                "self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "workers_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                "checksum": round(checksum, 3),
            }
        )
    )


def run_child(folder: Path, workers: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", str(folder), "--workers", str(workers), "--batch", str(args.batch)]
    cmd += ["--image-size", str(args.image_size), "--threads", str(args.threads)] + (["--model"] if args.model else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs=2, default=[2000, 20000])
    p.add_argument("--workers", type=int, default=2, help="workers of the RSS runs")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", action="store_true", help="a tiny conv step per batch")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.workers, args.batch, args.image_size, args.model, args.threads)
        return
    from trionet_dsl.train.data.synthetic import make_image_folder

    with tempfile.TemporaryDirectory(prefix="trionet-rss-") as tmp:
        folders = {}
        for n in args.sizes:
            t = time.perf_counter()
            folders[n] = make_image_folder(Path(tmp) / f"n{n}", classes=10, per_class=n // 10, size=64, seed=1)
            print(f"generated {n} JPEGs (64x64) in {time.perf_counter() - t:.1f} s")
        rows = {n: run_child(folders[n], args.workers, args) for n in args.sizes}
        setting = f"{args.workers} workers, batch {args.batch}, crop {args.image_size}"
        print(f"\npeak RSS, one epoch (train split, 80%), {setting}")
        print(f"{'images':>8} {'main MiB':>9} {'worker MiB':>11} {'epoch s':>8} {'img/s':>7}")
        for n, r in rows.items():
            print(
                f"{n:>8} {r['self_kb'] / 1024:9.1f} {r['workers_kb'] / 1024:11.1f} {r['seconds']:8.1f} "
                f"{r['images'] / r['seconds']:7.0f}"
            )
        a, b = (rows[n] for n in args.sizes)
        print(
            f"ratio {args.sizes[1]} / {args.sizes[0]}: main {b['self_kb'] / a['self_kb']:.3f}, "
            f"largest worker {b['workers_kb'] / max(1, a['workers_kb']):.3f} (goal <= 1.10)"
        )
        small = folders[args.sizes[0]]
        print(f"\ndata-loader images/s, {args.sizes[0]}-image folder, one epoch (interleaved: 0,1,2,0,1,2)")
        speed: dict[int, list[float]] = {0: [], 1: [], 2: []}
        sums: dict[int, float] = {}
        for _ in range(2):
            for w in (0, 1, 2):
                r = run_child(small, w, args)
                speed[w].append(r["images"] / r["seconds"])
                sums[w] = r["checksum"]
        for w in (0, 1, 2):
            best = max(speed[w])
            print(f"  workers {w}: {best:7.0f} img/s (x{best / max(speed[0]):.2f} of 0 workers; runs {speed[w]})")
        print(f"  same batches with 0/1/2 workers (checksum of pixels): {len(set(sums.values())) == 1}")


if __name__ == "__main__":
    main()

"""Which supernet ranks architectures best? The TrioNet paper's two methods, measured by ranking.

The same N sub-networks (``trionet rank``'s pick: the single-operator archs, the rest stratified
by FLOPs) are trained from scratch R times each (the stand-alone accuracies and their seed-to-seed
noise ceiling), then five supernets are trained with one budget — {hierarchical, uniform}
sampling x {multihead, prefix} sharing, plus sandwich — and each one's one-shot accuracies
(inherited weights, BN recalibrated exactly as ``trionet search`` does) are ranked against the
stand-alone ones: Kendall τ-b, Spearman ρ, top-k overlap (k = N/4), bootstrap 95% intervals, and
τ as a fraction of the ceiling.

Default space: ``spaces/trionet_rank.space`` (16x16 grayscale, five operator choices that differ
in accuracy and cost), on mnist5k. Everything finished is kept in ``--out`` (stand-alone runs
in ``standalone.jsonl``, one-shot accuracies per supernet in ``oneshot.jsonl``): a re-run with
the same options resumes. Prints the table and writes ``ablation.json``.

    python benchmarks/ranking_ablation.py                 # N=24, R=2, 8 stand-alone / 8 supernet epochs
    python benchmarks/ranking_ablation.py --quick         # CI-sized smoke: N=6, R=2, 1 epoch each
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trionet_dsl import load
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.app.ranking import kendall_tau_b, noise_ceiling, pick_archs, rank_statistics
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.search.evaluators import SupernetEvaluator
from trionet_dsl.space.loader import LoadedArch
from trionet_dsl.train import loop
from trionet_dsl.train.checkpoint import load_checkpoint
from trionet_dsl.train.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
SUPERNETS = [
    ("hierarchical", "multihead"),
    ("hierarchical", "prefix"),
    ("uniform", "multihead"),
    ("uniform", "prefix"),
    ("sandwich", "multihead"),
]
BN_SWEEP = (1, 2, 4, 8, 16)


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by an interrupted run: everything after it is redone
    return out


def _append(path: Path, rec: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "spaces" / "trionet_rank.space"))
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--archs", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8, help="stand-alone epochs")
    ap.add_argument("--lr", type=float, default=0.1, help="stand-alone learning rate (SGD, cosine, batch 64)")
    ap.add_argument("--supernet-epochs", type=int, default=8)
    ap.add_argument("--bn-batches", type=int, default=8)
    ap.add_argument("--use-archs", type=int, default=None, help="rank the first K of the N picked only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "ranking_ablation"))
    ap.add_argument("--quick", action="store_true", help="smoke run: 6 archs, 1 epoch each")
    args = ap.parse_args()
    if args.quick:
        args.archs, args.epochs, args.supernet_epochs = 6, 1, 1
        args.out = tempfile.mkdtemp(prefix="ranking_ablation_")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "threads", "quick")}
    plan_path = out / "settings.json"
    if plan_path.is_file() and json.loads(plan_path.read_text()) != settings:
        raise SystemExit(f"{out} holds a run with other settings; pass another --out")
    plan_path.write_text(json.dumps(settings, indent=1))

    t0 = time.time()
    space = load(args.space)
    data = load_dataset(args.data, space, val_fraction=0.2, seed=args.seed)
    picked = pick_archs(space, args.archs, args.seed)[: args.use_archs]
    print(
        f"{space.name} on {args.data} ({len(data.train_x)} train / {len(data.val_x)} val), "
        f"{len(picked)} archs x {args.repeats} seeds, {args.epochs} stand-alone epochs, "
        f"{args.supernet_epochs} supernet epochs, {args.bn_batches} BN batches",
        flush=True,
    )

    sa_path = out / "standalone.jsonl"
    done = {(r["arch"], r["repeat"]): r["val_acc"] for r in _read(sa_path)}
    for k, p in enumerate(picked):
        for r in range(args.repeats):
            if (k, r) in done:
                continue
            cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=args.lr, seed=args.seed + r)
            with tempfile.TemporaryDirectory() as run:
                hist = loop.train(LoadedArch(space, p.arch), data, cfg, run, progress=False, overwrite=True)
            done[(k, r)] = hist[-1].val_acc
            _append(sa_path, {"arch": k, "repeat": r, "val_acc": hist[-1].val_acc})
            print(
                f"  stand-alone {k + 1}/{len(picked)} ({p.mix}, {p.flops:,} MACs) seed {r}: "
                f"{hist[-1].val_acc:.4f}  [{time.time() - t0:.0f} s]",
                flush=True,
            )
    runs = [[done[(k, r)] for k in range(len(picked))] for r in range(args.repeats)]
    standalone = [float(np.mean([run[k] for run in runs])) for k in range(len(picked))]
    ceiling = noise_ceiling(runs)

    os_path = out / "oneshot.jsonl"
    oneshot = {r["supernet"]: r["accs"] for r in _read(os_path)}
    for sampling, sharing in SUPERNETS:
        name = f"{sampling}/{sharing}"
        if name in oneshot:
            continue
        cfg = TrainConfig(
            epochs=args.supernet_epochs, batch_size=32, lr=0.2, seed=args.seed, sampling=sampling, sharing=sharing
        )
        with tempfile.TemporaryDirectory() as run:
            loop.train(space, data, cfg, run, progress=False, overwrite=True)
            kept = out / "supernets" / f"{sampling}_{sharing}.pt"
            kept.parent.mkdir(exist_ok=True)
            shutil.copyfile(Path(run) / "supernet.pt", kept)  # for the BN-batches sweep and later looks
        net = Supernet.from_checkpoint(load_checkpoint(kept), space).to(memory_format=torch.channels_last)
        ev = SupernetEvaluator(net, data, bn_batches=args.bn_batches, seed=args.seed)
        oneshot[name] = [ev(p.arch)["accuracy"] for p in picked]
        _append(os_path, {"supernet": name, "accs": oneshot[name]})
        print(f"  supernet {name}: trained and evaluated  [{time.time() - t0:.0f} s]", flush=True)

    rows = []
    for sampling, sharing in SUPERNETS:
        name = f"{sampling}/{sharing}"
        stats = rank_statistics(oneshot[name], standalone, resamples=1000, seed=args.seed)
        tau = stats["kendall_tau"]["value"]
        single = [kendall_tau_b(oneshot[name], run) for run in runs]
        rows.append(
            {
                "supernet": name,
                "statistics": stats,
                "tau_vs_single_runs": float(np.nanmean(single)),
                # a fraction of a ceiling at or below 0 means nothing
                "tau_fraction_of_ceiling": tau / ceiling if ceiling and ceiling > 0 else None,
                "mean_oneshot": float(np.mean(oneshot[name])),
            }
        )
    # How many BN-recalibration batches does one-shot ranking need? (search's inner loop: each batch
    # is a forward pass of CALIBRATION_BATCH_SIZE images per evaluated arch)
    sweep_path = out / "bn_sweep.jsonl"
    sweep = {r["bn_batches"]: r for r in _read(sweep_path)}
    default = f"{SUPERNETS[0][0]}_{SUPERNETS[0][1]}.pt"
    net = Supernet.from_checkpoint(load_checkpoint(out / "supernets" / default), space)
    net = net.to(memory_format=torch.channels_last)
    for n in BN_SWEEP:
        if n in sweep:
            continue
        ev = SupernetEvaluator(net, data, bn_batches=n, seed=args.seed)
        t = time.perf_counter()
        accs = [ev(p.arch)["accuracy"] for p in picked]
        per_min = 60 * len(picked) / (time.perf_counter() - t)
        stats = rank_statistics(accs, standalone, resamples=1000, seed=args.seed)
        sweep[n] = {"bn_batches": n, "statistics": stats, "archs_per_minute": per_min, "accs": accs}
        _append(sweep_path, sweep[n])

    report = {
        "settings": settings,
        "noise_ceiling_tau": ceiling,
        "standalone": standalone,
        "standalone_runs": runs,
        "archs": [{"text": p.text, "operators": p.mix, "flops": p.flops, "params": p.params} for p in picked],
        "supernets": rows,
        "bn_sweep": [sweep[n] for n in BN_SWEEP],
        "oneshot": oneshot,
        "seconds": time.time() - t0,
    }
    (out / "ablation.json").write_text(json.dumps(report, indent=1))

    def fmt(s: dict[str, Any]) -> str:
        lo, hi = s["ci95"]
        return f"{s['value']:+.2f} [{lo:+.2f}, {hi:+.2f}]"

    print(f"\nstand-alone: mean {np.mean(standalone):.4f}, range {min(standalone):.4f}-{max(standalone):.4f}")
    print(f"noise ceiling (seed-to-seed tau of the stand-alone accuracies): {ceiling}")
    print(
        f"| supernet | Kendall tau | Spearman rho | top-{rows[0]['statistics']['k']} | tau / ceiling | mean one-shot |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        s = row["statistics"]
        frac = row["tau_fraction_of_ceiling"]
        print(
            f"| {row['supernet']} | {fmt(s['kendall_tau'])} | {fmt(s['spearman_rho'])} | {fmt(s['top_k_overlap'])} "
            f"| {'n/a' if frac is None else f'{frac:.2f}'} | {row['mean_oneshot']:.4f} |"
        )
    print(f"\n{SUPERNETS[0][0]}/{SUPERNETS[0][1]} supernet, one-shot ranking by BN-recalibration batches:")
    print("| BN batches | Kendall tau | Spearman rho | archs/min (this run) |")
    print("|---|---|---|---|")
    for n in BN_SWEEP:
        s = sweep[n]["statistics"]
        print(f"| {n} | {fmt(s['kendall_tau'])} | {fmt(s['spearman_rho'])} | {sweep[n]['archs_per_minute']:.0f} |")
    print(f"\n{time.time() - t0:.0f} s; results in {out}")


if __name__ == "__main__":
    main()

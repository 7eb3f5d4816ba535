"""Which supernet ranks architectures best? The TrioNet paper's two methods, measured by ranking.

The same N sub-networks (``trionet rank``'s pick: the single-operator archs, the rest stratified
by FLOPs) are trained from scratch R times each (the stand-alone accuracies and their seed-to-seed
noise ceiling), then supernet variants (``VARIANTS``) — the paper's {hierarchical, uniform}
sampling x {multihead, prefix} sharing and sandwich with one budget, then the options that try
to make it rank better (in-place distillation, warm-up of the largest, twice the epochs) — and
each one's one-shot accuracies
(inherited weights, BN recalibrated exactly as ``trionet search`` does) are ranked against the
stand-alone ones: Kendall τ-b, Spearman ρ, top-k overlap (k = N/4), bootstrap 95% intervals, and
τ as a fraction of the ceiling.

Default space: ``spaces/trionet_rank.space`` (16x16 grayscale, five operator choices that differ
in accuracy and cost), on mnist5k. Everything finished is kept in ``--out`` (stand-alone runs
in ``standalone.jsonl``, one-shot accuracies per supernet in ``oneshot.jsonl``): a re-run with
the same options resumes, and stand-alone and supernet work can run in separate processes
(``--phase standalone`` in one or more — they claim trainings, seed-major — ``--phase supernets``
in another, then ``--phase report``). Prints the table, with each variant's τ minus the baseline's
under a paired bootstrap, and writes ``ablation.json``.

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
from trionet_dsl.app.ranking import bootstrap_difference, kendall_tau_b, noise_ceiling, pick_archs, rank_statistics
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.search.evaluators import SupernetEvaluator
from trionet_dsl.space.loader import LoadedArch
from trionet_dsl.train import loop
from trionet_dsl.train.checkpoint import load_checkpoint
from trionet_dsl.train.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
# name -> (TrainConfig overrides, supernet epochs as a multiple of --supernet-epochs). The first five
# are the paper's two methods (and sandwich) at one budget; the rest are the options of issue 11
# item 4 that try to make the supernet rank better (train/supernet_step.py), at their own cost.
VARIANTS: dict[str, tuple[dict[str, Any], int]] = {
    "hierarchical/multihead": ({"distill": False, "sampling": "hierarchical", "sharing": "multihead"}, 1),
    "hierarchical/prefix": ({"distill": False, "sampling": "hierarchical", "sharing": "prefix"}, 1),
    "uniform/multihead": ({"distill": False, "sampling": "uniform", "sharing": "multihead"}, 1),
    "uniform/prefix": ({"distill": False, "sampling": "uniform", "sharing": "prefix"}, 1),
    "sandwich/multihead": ({"distill": False, "sampling": "sandwich", "sharing": "multihead"}, 1),
    "hierarchical/multihead+distill": ({"sampling": "hierarchical", "distill": True}, 1),
    "uniform/multihead+distill": ({"sampling": "uniform", "distill": True}, 1),
    "sandwich/multihead+distill": ({"sampling": "sandwich", "distill": True}, 1),
    "hierarchical/prefix+distill": ({"sampling": "hierarchical", "sharing": "prefix", "distill": True}, 1),
    "uniform/prefix+distill": ({"sampling": "uniform", "sharing": "prefix", "distill": True}, 1),
    "hierarchical/multihead+warmup": ({"distill": False, "sampling": "hierarchical", "warmup_largest_steps": -1}, 1),
    "hierarchical/multihead x2 epochs": ({"distill": False, "sampling": "hierarchical"}, 2),
    "uniform/multihead x2 epochs": ({"distill": False, "sampling": "uniform"}, 2),
}
BASELINE = "hierarchical/multihead"  # the default before distillation: the table's reference row
BN_SWEEP = (1, 2, 4, 8, 16)
STANDALONE_KEYS = ("space", "data", "archs", "repeats", "epochs", "lr", "seed")


def supernet_config(name: str, epochs: int, steps_per_epoch: int, seed: int) -> TrainConfig:
    """The TrainConfig of variant ``name`` (warm-up -1 = the first of the run's epochs, in steps)."""
    overrides, mult = VARIANTS[name]
    over = dict(overrides)
    if over.get("warmup_largest_steps") == -1:
        over["warmup_largest_steps"] = steps_per_epoch
    return TrainConfig(epochs=epochs * mult, batch_size=32, lr=0.2, seed=seed, **over)


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


def _claim(out: Path, k: int, r: int) -> bool:
    """Take stand-alone training (k, r) for this process; False when a live process holds it."""
    d = out / "claims"
    d.mkdir(exist_ok=True)
    path = d / f"{k}_{r}"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(path.read_text() or 0)
            os.kill(pid, 0)  # still running: leave it
            return pid == os.getpid()
        except (ValueError, ProcessLookupError):
            path.write_text(str(os.getpid()))  # its holder died: take it over
            return True
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _fmt(s: dict[str, Any]) -> str:
    lo, hi = s["ci95"]
    return f"{s['value']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _slug(name: str, seed: int) -> str:
    return name.replace("/", "_").replace("+", "_").replace(" ", "_") + f"_s{seed}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "spaces" / "trionet_rank.space"))
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--archs", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8, help="stand-alone epochs")
    ap.add_argument("--lr", type=float, default=0.1, help="stand-alone learning rate (SGD, cosine, batch 64)")
    ap.add_argument("--supernet-epochs", type=int, default=8, help="the budget of a x1 variant")
    ap.add_argument("--supernet-seeds", default="0", help="comma-separated supernet seeds, e.g. 0,1")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated supernet variants (see VARIANTS)")
    ap.add_argument("--sweep", default=BASELINE, help="comma-separated variants to sweep BN batches for ('' = none)")
    ap.add_argument("--sweep-batches", default=",".join(map(str, BN_SWEEP)), help="BN batch counts of the sweep")
    ap.add_argument("--bn-batches", type=int, default=8)
    ap.add_argument("--use-archs", type=int, default=None, help="rank the first K of the N picked only")
    ap.add_argument(
        "--phase",
        choices=("all", "standalone", "supernets", "report"),
        default="all",
        help="run one part only (e.g. stand-alone and supernets in two processes), then 'report'",
    )
    ap.add_argument("--seed-order", default="", help="stand-alone repeats in this order, e.g. 1,0 (a second process)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "ranking_ablation"))
    ap.add_argument("--quick", action="store_true", help="smoke run: 6 archs, 1 epoch each, three variants")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if args.quick:
        args.archs, args.epochs, args.supernet_epochs = 6, 1, 1
        variants = [BASELINE, "hierarchical/prefix", "hierarchical/multihead+distill"]
        args.out = tempfile.mkdtemp(prefix="ranking_ablation_")
    unknown = [v for v in variants + [v for v in args.sweep.split(",") if v] if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    seeds = [int(s) for s in args.supernet_seeds.split(",")]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # only what decides the stand-alone accuracies must match a folder's earlier run: supernet
    # variants are recorded with their full config and added to (or redone in) the same folder
    settings = {k: getattr(args, k) for k in STANDALONE_KEYS}
    settings["space"] = Path(args.space).name
    plan_path = out / "settings.json"
    if plan_path.is_file():
        old = json.loads(plan_path.read_text())
        old["space"] = Path(old["space"]).name
        if {k: old.get(k) for k in STANDALONE_KEYS} != settings:
            raise SystemExit(f"{out} holds stand-alone runs with other settings; pass another --out")
    else:
        plan_path.write_text(json.dumps(settings, indent=1))

    t0 = time.time()
    space = load(args.space)
    data = load_dataset(args.data, space, val_fraction=0.2, seed=args.seed)
    picked = pick_archs(space, args.archs, args.seed)[: args.use_archs]
    steps_per_epoch = len(data.train_x) // 32
    print(
        f"{space.name} on {args.data} ({len(data.train_x)} train / {len(data.val_x)} val), "
        f"{len(picked)} archs x {args.repeats} seeds, {args.epochs} stand-alone epochs, "
        f"{args.supernet_epochs} supernet epochs (x1), {args.bn_batches} BN batches, phase {args.phase}",
        flush=True,
    )

    sa_path = out / "standalone.jsonl"
    done = {(r["arch"], r["repeat"]): r["val_acc"] for r in _read(sa_path)}
    if args.phase in ("all", "standalone"):
        # seed-major: every arch's first training before any second one, so a run cut short still
        # ranks all N archs (the ceiling then comes from the archs that have every repeat)
        # several processes may share the work (--seed-order 1,0 in a second one): each training is
        # claimed first, and results other processes finished are re-read before each one
        order = [int(r) for r in args.seed_order.split(",")] if args.seed_order else list(range(args.repeats))
        order += [r for r in range(args.repeats) if r not in order]
        for r in order:
            for k, p in enumerate(picked):
                done.update({(x["arch"], x["repeat"]): x["val_acc"] for x in _read(sa_path)})
                if (k, r) in done or not _claim(out, k, r):
                    continue
                cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=args.lr, seed=args.seed + r)
                t = time.time()
                with tempfile.TemporaryDirectory() as run:
                    hist = loop.train(LoadedArch(space, p.arch), data, cfg, run, progress=False, overwrite=True)
                done[(k, r)] = hist[-1].val_acc
                _append(sa_path, {"arch": k, "repeat": r, "val_acc": hist[-1].val_acc, "seconds": time.time() - t})
                print(
                    f"  stand-alone {k + 1}/{len(picked)} ({p.mix}, {p.flops:,} MACs) seed {r}: "
                    f"{hist[-1].val_acc:.4f}  [{time.time() - t0:.0f} s]",
                    flush=True,
                )

    os_path = out / "oneshot.jsonl"
    oneshot: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in _read(os_path):
        rec.setdefault("seed", args.seed)  # records of the first version: the five original variants, seed 0
        if "config" not in rec:
            rec["config"] = supernet_config(rec["supernet"], args.supernet_epochs, steps_per_epoch, rec["seed"])
            rec["config"] = rec["config"].model_dump(mode="json")
        oneshot[(rec["supernet"], rec["seed"])] = rec
    if args.phase in ("all", "supernets"):
        for name in variants:
            for seed in seeds:
                cfg = supernet_config(name, args.supernet_epochs, steps_per_epoch, seed)
                rec = oneshot.get((name, seed))
                if rec is not None and rec["config"] == cfg.model_dump(mode="json") and len(rec["accs"]) >= len(picked):
                    continue
                kept = out / "supernets" / f"{_slug(name, seed)}.pt"
                t = time.time()
                if not (kept.is_file() and load_checkpoint(kept)["config"] == cfg.model_dump(mode="json")):
                    with tempfile.TemporaryDirectory() as run:
                        loop.train(space, data, cfg, run, progress=False, overwrite=True)
                        kept.parent.mkdir(exist_ok=True)
                        shutil.copyfile(Path(run) / "supernet.pt", kept)  # for the BN sweep and later looks
                train_s = time.time() - t
                net = Supernet.from_checkpoint(load_checkpoint(kept), space).to(memory_format=torch.channels_last)
                ev = SupernetEvaluator(net, data, bn_batches=args.bn_batches, seed=args.seed)
                accs = [ev(p.arch)["accuracy"] for p in picked]
                rec = {"supernet": name, "seed": seed, "config": cfg.model_dump(mode="json"), "accs": accs}
                rec["train_seconds"] = train_s
                oneshot[(name, seed)] = rec
                _append(os_path, rec)
                seed0 = [done.get((k, 0)) for k in range(len(picked))]
                known = [(x, y) for x, y in zip(accs, seed0, strict=True) if y is not None]  # the other phase may run
                tau = kendall_tau_b(*zip(*known, strict=True)) if len(known) >= 3 else float("nan")
                print(
                    f"  supernet {name} seed {seed}: trained in {train_s:.0f} s, tau vs the {len(known)} seed-0 "
                    f"stand-alone accuracies known {tau:+.2f}  [{time.time() - t0:.0f} s]",
                    flush=True,
                )
    if args.phase in ("standalone", "supernets"):
        print(f"\nphase {args.phase} done in {time.time() - t0:.0f} s; results in {out}")
        return

    missing = [k for k in range(len(picked)) if (k, 0) not in done]
    if missing:
        raise SystemExit(f"{len(missing)} arch(s) have no stand-alone training: run --phase standalone first")
    full = [k for k in range(len(picked)) if all((k, r) in done for r in range(args.repeats))]
    standalone = [
        float(np.mean([done[(k, r)] for r in range(args.repeats) if (k, r) in done])) for k in range(len(picked))
    ]
    runs = [[done[(k, r)] for k in full] for r in range(args.repeats)]  # the archs with every repeat
    ceiling = noise_ceiling(runs) if len(full) >= 3 else None

    rows = []
    for name in variants:
        for seed in seeds:
            rec = oneshot.get((name, seed))
            if rec is None:
                continue
            accs = rec["accs"][: len(picked)]
            stats = rank_statistics(accs, standalone, resamples=1000, seed=args.seed)
            tau = stats["kendall_tau"]["value"]
            base = oneshot.get((BASELINE, seed))
            diff = (
                bootstrap_difference(kendall_tau_b, accs, base["accs"][: len(picked)], standalone, seed=args.seed)
                if base is not None and name != BASELINE
                else None
            )
            rows.append(
                {
                    "supernet": name,
                    "seed": seed,
                    "config": rec["config"],
                    "statistics": stats,
                    "tau_minus_baseline": diff,
                    "tau_vs_single_runs": float(
                        np.nanmean([kendall_tau_b([accs[k] for k in full], run) for run in runs])
                    )
                    if len(full) >= 3
                    else None,
                    # a fraction of a ceiling at or below 0 means nothing
                    "tau_fraction_of_ceiling": tau / ceiling if ceiling and ceiling > 0 else None,
                    "mean_oneshot": float(np.mean(accs)),
                    "train_seconds": rec.get("train_seconds"),
                }
            )
    # How many BN-recalibration batches does one-shot ranking need? (search's inner loop: each batch
    # is a forward pass of CALIBRATION_BATCH_SIZE images per evaluated arch)
    sweep_path = out / "bn_sweep.jsonl"
    sweep = {(r.get("supernet", BASELINE), r["bn_batches"]): r for r in _read(sweep_path)}
    for name in [v for v in args.sweep.split(",") if v]:
        kept = out / "supernets" / f"{_slug(name, seeds[0])}.pt"
        if not kept.is_file():
            old = out / "supernets" / (name.replace("/", "_") + ".pt")  # the first version's file name
            kept = old if old.is_file() else kept
        if not kept.is_file():
            continue
        net = Supernet.from_checkpoint(load_checkpoint(kept), space).to(memory_format=torch.channels_last)
        for n in [int(b) for b in args.sweep_batches.split(",") if b]:
            if (name, n) in sweep:
                continue
            ev = SupernetEvaluator(net, data, bn_batches=n, seed=args.seed)
            t = time.perf_counter()
            accs = [ev(p.arch)["accuracy"] for p in picked]
            per_min = 60 * len(picked) / (time.perf_counter() - t)
            stats = rank_statistics(accs, standalone, resamples=1000, seed=args.seed)
            sweep[(name, n)] = {
                "supernet": name,
                "bn_batches": n,
                "statistics": stats,
                "archs_per_minute": per_min,
                "accs": accs,
            }
            _append(sweep_path, sweep[(name, n)])

    report = {
        "settings": settings | {"supernet_epochs": args.supernet_epochs, "bn_batches": args.bn_batches},
        "noise_ceiling_tau": ceiling,
        "noise_ceiling_archs": full,
        "standalone": standalone,
        "standalone_runs": runs,
        "archs": [{"text": p.text, "operators": p.mix, "flops": p.flops, "params": p.params} for p in picked],
        "supernets": rows,
        "bn_sweep": list(sweep.values()),
        "seconds": time.time() - t0,
    }
    (out / "ablation.json").write_text(json.dumps(report, indent=1))

    print(f"\nstand-alone: mean {np.mean(standalone):.4f}, range {min(standalone):.4f}-{max(standalone):.4f}")
    print(
        f"noise ceiling (seed-to-seed tau of the stand-alone accuracies, over the {len(full)} of {len(picked)} "
        f"archs trained {args.repeats} times): {ceiling}"
    )
    k = rows[0]["statistics"]["k"] if rows else max(1, len(picked) // 4)
    print(
        f"| supernet | seed | Kendall tau | tau - {BASELINE} (paired) | Spearman rho | top-{k} | tau / ceiling "
        "| mean one-shot | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        s = row["statistics"]
        frac = row["tau_fraction_of_ceiling"]
        d = row["tau_minus_baseline"]
        print(
            f"| {row['supernet']} | {row['seed']} | {_fmt(s['kendall_tau'])} | {'' if d is None else _fmt(d)} "
            f"| {_fmt(s['spearman_rho'])} | {_fmt(s['top_k_overlap'])} "
            f"| {'n/a' if frac is None else f'{frac:.2f}'} | {row['mean_oneshot']:.4f} "
            f"| {row['train_seconds'] or 0:.0f} |"
        )
    if len(seeds) > 1:
        print("\nmean over supernet seeds:")
        for name in variants:
            taus = [r["statistics"]["kendall_tau"]["value"] for r in rows if r["supernet"] == name]
            if taus:
                print(f"  {name}: tau {np.mean(taus):+.3f} ({', '.join(f'{t:+.2f}' for t in taus)})")
    for name in {n for n, _ in sweep}:
        print(f"\n{name} supernet, one-shot ranking by BN-recalibration batches:")
        print("| BN batches | Kendall tau | Spearman rho | archs/min (this run) |")
        print("|---|---|---|---|")
        for n in BN_SWEEP:
            if (name, n) in sweep:
                r = sweep[(name, n)]
                st = r["statistics"]
                print(f"| {n} | {_fmt(st['kendall_tau'])} | {_fmt(st['spearman_rho'])} | {r['archs_per_minute']:.0f} |")
    print(f"\n{time.time() - t0:.0f} s; results in {out}")


if __name__ == "__main__":
    main()

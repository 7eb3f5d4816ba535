"""The whole job on a laptop CPU: supernet -> search -> export -> retrain -> compare.

A small version of the TrioNet paper's experiment: train the supernet of
``spaces/trionet_small.space`` on scikit-learn's bundled handwritten digits (real
8x8 scans, resized to the space's 32x32 input), search it with regularized evolution
under a FLOPs limit, write ``best.arch``, export it (TorchScript + ONNX, checked by
reloading), then train the searched arch and the all-conv / all-local / all-axial
archs of the same space from scratch with identical settings and compare them.

    python examples/end_to_end.py [--out examples/out] [--seed 0] [--quick]

Every step is a library call you can also make from the ``trionet`` CLI (shown above
each step). The numbers in the README were produced by this script.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.app.export import export_job
from trionet_dsl.app.searching import search_job
from trionet_dsl.lang.emit import emit_arch
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.loader import LoadedArch, load_space
from trionet_dsl.space.sampling import uniform_op
from trionet_dsl.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "spaces" / "trionet_small.space"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "examples" / "out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a smoke version (2 epochs, budget 8; see the README)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    con = Console()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    supernet_epochs, arch_epochs, budget = (2, 2, 8) if args.quick else (15, 15, 60)

    space = load_space(SPACE)
    cost = CostModel(space)
    ext = cost.extremes()
    data = load_dataset("digits", space, val_fraction=0.2, seed=args.seed)
    con.rule(f"space {space.name}: {space.size:,} architectures, FLOPs {ext['flops_min']:,}..{ext['flops_max']:,}")

    # 1. trionet train spaces/trionet_small.space --data digits --epochs N --out OUT/supernet
    cfg = TrainConfig(epochs=supernet_epochs, batch_size=32, lr=0.2, seed=args.seed, sampling="hierarchical")
    con.rule("1. supernet training (Hierarchical Sampling)")
    train(space, data, cfg, out / "supernet", progress=True, overwrite=True)

    # 2. trionet search spaces/trionet_small.space --checkpoint OUT/supernet/supernet.pt --max-flops L
    limit = (ext["flops_min"] + ext["flops_max"]) // 2
    con.rule(f"2. evolutionary search under {limit / 1e6:.1f}M FLOPs")
    found = search_job(
        SPACE,
        out / "supernet" / "supernet.pt",
        out / "best.arch",
        strategy="evolution",
        budget=budget,
        max_flops=limit,
        seed=args.seed,
        overwrite=True,
        strategy_options={"population": 12, "sample_size": 4},
        warn=lambda m: con.print(f"warning: {m}"),
    )
    con.print(f"evaluated on {found.data}")
    con.print(found.best_text)

    # 3. trionet export OUT/best.arch --checkpoint OUT/supernet/supernet.pt --out OUT/best.ts|.onnx
    #    (BN recalibrated as search did; the written file is run on the validation split from raw pixels)
    con.rule("3. export")
    for suffix in (".ts", ".onnx"):
        r = export_job(out / "best.arch", out / f"best{suffix}", out / "supernet" / "supernet.pt")
        con.print(
            f"{r.path.name}: {r.params:,} params, reload max |diff| {r.max_abs_diff:.1e}, "
            f"validation accuracy of the file {r.accuracy:.4f} (search reported {found.accuracy:.4f})"
        )

    # 4. trionet train OUT/<arch>.arch --data digits --epochs N  (same settings for every arch)
    con.rule("4. retrain searched vs single-operator archs from scratch")
    candidates = {"searched (TrioNet)": found.best.arch}
    for kind in ("conv", "local", "axial"):
        a = uniform_op(space, kind)
        (out / f"all_{kind}.arch").write_text(emit_arch(a))
        candidates[f"all-{kind}"] = a
    acfg = TrainConfig(epochs=arch_epochs, batch_size=32, lr=0.05, seed=args.seed)
    rows = []
    for label, arch in candidates.items():
        hist = train(
            LoadedArch(space, arch),
            data,
            acfg,
            out / label.split()[0].replace("-", "_"),
            progress=False,
            overwrite=True,
        )
        c = cost.cost(arch)
        rows.append((label, hist[-1].val_acc, max(h.val_acc for h in hist), c.params, c.flops))
        con.print(f"{label}: final val acc {hist[-1].val_acc:.4f}")

    t = Table(title=f"digits (1,797 real images, 20% held out), {arch_epochs} epochs each, seed {args.seed}")
    for col in ("arch", "val acc (final)", "val acc (best epoch)", "params", "FLOPs (MACs)"):
        t.add_column(col, justify="left" if col == "arch" else "right")
    for label, acc, best, p, f in rows:
        t.add_row(label, f"{acc:.4f}", f"{best:.4f}", f"{p:,}", f"{f / 1e6:.2f}M")
    con.print(t)
    con.print(f"one-shot accuracy of the searched arch (inherited weights): {found.accuracy:.4f}")
    con.print(f"total time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()

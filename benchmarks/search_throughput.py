"""Search's inner loop: one-shot evaluations (BN recalibration + validation) per minute.

Evaluates one sequence of ``trionet_small`` sub-networks on the bundled digits (20% validation
split: 359 images) with each setting, interleaved arch by arch so a busy machine slows every
setting alike, and prints archs/minute and the ratio to the first setting. The sequence is what a
search proposes: ``--sequence evolution`` (default) runs the default evolution strategy for
``--archs`` queries on the synthetic accuracy table (``search.tabular``, so selection has something
to select on; an untrained supernet scores every arch alike), ``random`` draws them at random.
Settings: ``off`` (the whole network recalibrated batch by batch, as before the prefix cache) or a
cache size in MB (``--cache-mb`` of ``trionet search``; block by block, reusing prefixes), at
``--bn-batches`` recalibration batches of 128 (``bn=N`` in a setting overrides it, e.g. ``off:bn=2``).
An untrained supernet is enough: the cost of an evaluation does not depend on the weights (its BN
scales are drawn away from zero so that archs score differently, and the last column, which checks
that a setting's accuracies equal the first setting's, means something for settings of the same
BN batches).

    python benchmarks/search_throughput.py [--archs 60] [--settings off,1024] [--sequence evolution]

``--save-sequence F`` writes the sequence as arch texts and ``--sequence-file F`` reads one, so an
older release (``PYTHONPATH`` to its tree, setting ``off`` only) times the same archs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from pathlib import Path

import torch

from trionet_dsl import load
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.search.evaluators import SupernetEvaluator

ROOT = Path(__file__).resolve().parent.parent


def sequence(space, kind: str, n: int, seed: int) -> list:
    """The archs a search of ``n`` queries evaluates, in order."""
    from trionet_dsl.search.base import Limits
    from trionet_dsl.search.driver import run_search
    from trionet_dsl.search.tabular import TableEvaluator
    from trionet_dsl.space.cost import arch_cost

    table = TableEvaluator(space, seed=seed)
    seen: list = []

    def evaluate(arch) -> dict[str, float]:
        seen.append(arch)
        return table(arch)

    def cost(arch) -> tuple[int, int]:
        c = arch_cost(space, arch)
        return c.params, c.flops

    strategy = "evolution" if kind == "evolution" else "random"
    run_search(space, strategy, evaluate, cost, Limits(), n, seed=seed, progress=False)
    return seen


def parse_setting(s: str, bn_default: int) -> tuple[str, int | None, int]:
    """'off' / '1024' / 'off:bn=2' -> (label, cache MB or None, BN batches)."""
    head, _, opt = s.partition(":")
    bn = int(opt.split("=", 1)[1]) if opt.startswith("bn=") else bn_default
    return s, None if head == "off" else int(head), bn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=60)
    ap.add_argument("--settings", default="off,1024", help="off | cache MB [:bn=N]; the first is the baseline")
    ap.add_argument("--bn-batches", type=int, default=8)
    ap.add_argument("--sequence", choices=("evolution", "random"), default="evolution")
    ap.add_argument("--save-sequence", type=Path)
    ap.add_argument("--sequence-file", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space = load(ROOT / "spaces" / "trionet_small.space")
    if args.sequence_file is not None:
        from trionet_dsl.space.loader import compile_arch_text

        texts = json.loads(args.sequence_file.read_text())
        archs = [compile_arch_text(t, "<sequence>", space).arch for t in texts]
    else:
        archs = sequence(space, args.sequence, args.archs, args.seed)
    if args.save_sequence is not None:
        from trionet_dsl.lang.emit import emit_arch

        args.save_sequence.write_text(json.dumps([emit_arch(a) for a in archs]))
    data = load_dataset("digits", space, val_fraction=0.2, seed=args.seed)
    net = Supernet(space, seed=args.seed).to(memory_format=torch.channels_last)
    with torch.no_grad():  # BN scales off their zero init, where every block is the identity and every
        for name, p in net.named_parameters():  # arch scores alike: then equal accuracies prove something
            if p.ndim == 1 and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
    settings = [parse_setting(s, args.bn_batches) for s in args.settings.split(",")]
    takes_cache = "cache_bytes" in inspect.signature(SupernetEvaluator).parameters
    evaluators = {}
    for label, mb, bn in settings:
        kw = {"cache_bytes": (mb or 0) << 20} if takes_cache else {}
        if mb is not None and not takes_cache:
            raise SystemExit(f"setting {label}: this release has no prefix cache")
        evaluators[label] = SupernetEvaluator(net, data, bn_batches=bn, seed=args.seed, **kw)
    seconds: dict[str, list[float]] = {label: [] for label, _, _ in settings}
    accs: dict[str, list[float]] = {label: [] for label, _, _ in settings}
    for arch in archs:
        for label, ev in evaluators.items():
            t = time.perf_counter()
            accs[label].append(ev(arch)["accuracy"])
            seconds[label].append(time.perf_counter() - t)
    base = sum(seconds[settings[0][0]])
    distinct = len({str(a.blocks) for a in archs})
    n_val = len(data.val) if hasattr(data, "val") else len(data.val_x)  # older releases: val_x only
    print(
        f"trionet_small on digits ({n_val} validation images), {len(archs)} archs of a "
        f"{args.sequence if args.sequence_file is None else args.sequence_file.name} sequence "
        f"({distinct} distinct), {args.threads} threads, torch {torch.__version__}"
    )
    print(
        "| setting | BN batches | archs/min | median s/arch | speed-up | block reuse | same accuracies as the first |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, _, bn in settings:
        total = sum(seconds[label])
        cache = getattr(evaluators[label], "cache", None)
        reuse = "-" if cache is None else f"{cache.reuse:.2f}"
        same = accs[label] == accs[settings[0][0]]
        print(
            f"| {label} | {bn} | {60 * len(archs) / total:.1f} | {statistics.median(seconds[label]):.3f} "
            f"| {base / total:.2f}x | {reuse} | {same} |"
        )


if __name__ == "__main__":
    main()

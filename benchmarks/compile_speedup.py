"""Does ``--compile`` (``torch.compile``) pay for ``trionet_small``'s fixed networks?

Two cases, for the all-conv, all-local and all-axial archs (largest widths), each eager against
compiled with the library's own helper (``trionet_dsl.train.compiling.compile_model``, what
``--compile`` runs), in one run so the ratios share the machine's state:

* ``train``: a ``build`` model's forward+backward at ``--batch`` (``trionet train ARCH``);
* ``oneshot``: the arch extracted from a ``Supernet`` in eval mode, forward under ``no_grad`` at
  ``--eval-batch`` (one-shot evaluation's validation pass in ``trionet search`` / ``rank``).

Compile time (the first compiled call, which traces and compiles) is reported apart from the
step time (median of ``--steps`` interleaved calls after warm-up). Graph counts come from dynamo's
counters: more than one graph per model means graph breaks, and a second batch size afterwards
shows whether a shape change recompiles. ``pays after`` is how many calls of the compiled model
win back its compile time (``never`` when it is slower); for one-shot evaluation every arch
compiles once, so an arch's validation split must be at least that many batches long.

    python benchmarks/compile_speedup.py [--threads 2] [--steps 5] [--batch 16] [--eval-batch 256]
        [--backend inductor|aot_eager|eager] [--kinds conv,local,axial] [--cases train,oneshot]
        [--mode default|reduce-overhead|max-autotune]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch._dynamo

from trionet_dsl import load
from trionet_dsl.nn.network import build
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.space.sampling import uniform_op
from trionet_dsl.train.compiling import compile_model, compile_scope

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("conv", "local", "axial")
CASES = ("train", "oneshot")


def train_step(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model(x).sum().backward()
    dt = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return dt


@torch.no_grad()
def eval_step(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model(x).argmax(1)
    return time.perf_counter() - t0


def graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def models(space: ResolvedSpace, kind: str, case: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two identical copies of the case's network: one stays eager, one is compiled."""
    arch = uniform_op(space, kind)
    if case == "train":
        return build(space, arch, seed=0).train(), build(space, arch, seed=0).train()
    supernet = Supernet(space, seed=0).eval()
    return extract(supernet, arch).eval(), extract(supernet, arch).eval()


def measure(space: ResolvedSpace, kind: str, case: str, a: argparse.Namespace) -> tuple[float, float, float, int, int]:
    """(eager s, compiled s, compile s, graphs, graphs added by a second batch size)."""
    step: Callable[[torch.nn.Module, torch.Tensor], float] = train_step if case == "train" else eval_step
    batch = a.batch if case == "train" else a.eval_batch
    x = torch.randn(batch, 3, 32, 32)
    x2 = torch.randn(max(1, batch // 2), 3, 32, 32)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager, plain = models(space, kind, case)
    compiled = compile_model(plain, a.mode, a.backend)
    t0 = time.perf_counter()
    step(compiled, x)
    compile_s = time.perf_counter() - t0
    n_graphs = graphs()
    step(eager, x)  # warm-up
    te, tc = [], []
    for _ in range(a.steps):
        te.append(step(eager, x))
        tc.append(step(compiled, x))
    step(compiled, x2)  # a new batch size: does dynamo recompile (dynamic shapes)?
    return statistics.median(te), statistics.median(tc), compile_s, n_graphs, graphs() - n_graphs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed calls per model (median)")
    ap.add_argument("--batch", type=int, default=16, help="training batch")
    ap.add_argument("--eval-batch", type=int, default=256, help="one-shot validation batch (search's)")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend: inductor, aot_eager, eager ...")
    ap.add_argument("--mode", default="default", choices=("default", "reduce-overhead", "max-autotune"))
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: conv, local, axial")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: train (fwd+bwd), oneshot (eval)")
    a = ap.parse_args()
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    for name, given, known in (("--kinds", kinds, KINDS), ("--cases", cases, CASES)):
        bad = [v for v in given if v not in known]
        if bad or not given:
            ap.error(f"{name}: {', '.join(bad) or 'nothing given'}; choose from {', '.join(known)}")
    torch.set_num_threads(a.threads)
    space = load(ROOT / "spaces" / "trionet_small.space")
    print(
        f"trionet_small, 32x32, backend {a.backend}, mode {a.mode}, {a.threads} threads, torch {torch.__version__}; "
        f"train: fwd+bwd at batch {a.batch}; oneshot: extracted sub-network, eval, no grad, batch {a.eval_batch}"
    )
    cols = (
        f"{'eager ms':>9} {'compiled ms':>12} {'speed-up':>9} {'compile s':>10} {'graphs':>7} "
        f"{'+recompile':>11} {'pays after':>11}"
    )
    print(f"{'case':8} {'arch':6} {cols}")
    with compile_scope(a.mode):  # as the library runs compiled networks
        for case in cases:
            for kind in kinds:
                me, mc, compile_s, n_graphs, extra = measure(space, kind, case, a)
                gain = me - mc
                # the calls that win back the compile: its time beyond one eager call, over the gain per call
                pays = f"{max(1, round((compile_s - me) / gain)):,} calls" if gain > 0 else "never"
                print(
                    f"{case:8} {kind:6} {me * 1e3:9.1f} {mc * 1e3:12.1f} {me / mc:9.2f} {compile_s:10.1f} "
                    f"{n_graphs:7d} {extra:11d} {pays:>11}"
                )


if __name__ == "__main__":
    main()

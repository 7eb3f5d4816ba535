"""The paper's space at full size: the trionet_r50 supernet's memory and step time at 224x224 on the CPU.

For batch 1, 2, 4, 8 (``--batches``) and two sub-networks — the largest (every block at its
widest width and most heads, its operator drawn as the sandwich rule does, seed 0) and a mixed
one sampled by Hierarchical Sampling (seed 0) — one training step (forward, backward, SGD)
after one warm-up step: the step time (best of ``--repeats``), the bytes autograd saved for
backward (``torch.autograd.graph.saved_tensors_hooks``, unique storages: the activation memory
of the step) and the process's peak RSS so far (``ru_maxrss``; weights, gradients and momentum
included). Batches grow, so the peak after a row is that row's.

    python benchmarks/r50_224.py --threads 2                 # batches 1 2 4 8
    python benchmarks/r50_224.py --threads 2 --batches 1 2 4 --repeats 0  # a loaded machine: one step each
    python benchmarks/r50_224.py --device cuda --batches 8 16 32   # on a GPU (peak = torch.cuda.max_memory_allocated)
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def saved_bytes(step) -> int:
    import torch

    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="timed steps after the warm-up (0: time the warm-up)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    import torch
    import torch.nn.functional as F

    from trionet_dsl import load
    from trionet_dsl.nn.supernet import Supernet
    from trionet_dsl.space.cost import CostModel
    from trionet_dsl.space.sampling import extreme, sample

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    space = load(ROOT / "spaces" / "trionet_r50.space")
    t = time.perf_counter()
    net = Supernet(space, seed=0, batch_size=max(args.batches)).to(dev).to(memory_format=torch.channels_last)
    print(
        f"trionet_r50 supernet: {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters, "
        f"built in {time.perf_counter() - t:.1f} s; {args.threads} threads, device {dev}"
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    archs = {
        "largest": extreme(space, random.Random(0), largest=True, name="largest"),
        "mixed": sample(space, random.Random(0), "hierarchical"),
    }
    cost = CostModel(space)
    for name, arch in archs.items():
        params, flops = cost(arch)
        ops = Counter(b.op.kind for b in arch.blocks)
        print(f"  {name}: {flops / 1e9:.2f} G multiply-adds, {params / 1e6:.1f} M params, blocks {dict(ops)}")
    print(f"\n{'sub-network':>11} {'batch':>5} {'step s':>8} {'img/s':>6} {'saved MiB':>10} {'peak RSS MiB':>13}")
    for b in args.batches:
        x = torch.randn(b, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (b,), device=dev)
        for name, arch in archs.items():
            net.activate(arch)
            net.train()

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()  # noqa: B023  (the loop's current batch, on purpose)
                opt.step()

            t0 = time.perf_counter()
            saved = saved_bytes(step)  # the warm-up, timed too: with --repeats 0 it is the figure
            times = [time.perf_counter() - t0] if args.repeats == 0 else []
            for _ in range(args.repeats):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                step()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            best = min(times)
            peak = (
                torch.cuda.max_memory_allocated() / 2**20
                if dev.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            )
            print(f"{name:>11} {b:>5} {best:8.2f} {b / best:6.2f} {saved / 2**20:10.0f} {peak:13.0f}", flush=True)


if __name__ == "__main__":
    main()

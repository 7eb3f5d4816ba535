"""Training images/s of supernet sub-networks in fp32 vs bf16 (vs fp16 on a GPU), measured in one run.

All-conv, all-local, all-axial (widest) and one hierarchically sampled mixed sub-network; each
step is forward + backward + SGD under ``trionet_dsl.train.device.autocast`` (and the fp16
gradient scaler), as ``trionet train --precision`` runs it. Prints images/s and the ratio to fp32.

    python benchmarks/precision_throughput.py                      # CPU, trionet_small at 32x32, batch 32
    python benchmarks/precision_throughput.py --device cuda --space trionet_r50 --batch 32
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from trionet_dsl import load
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.space.sampling import sample, uniform_op
from trionet_dsl.train.device import autocast, check_precision, grad_scaler, resolve_device

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--space", default="trionet_small")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per setting (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    space = load(ROOT / "spaces" / f"{args.space}.space")
    inp = space.space.input
    torch.manual_seed(0)
    net = Supernet(space, seed=0, batch_size=args.batch).to(memory_format=torch.channels_last).to(dev).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, inp.channels, inp.height, inp.width, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.space.classes, (args.batch,), device=dev)
    archs = {k: uniform_op(space, k) for k in ("conv", "local", "axial")}
    archs["mixed"] = sample(space, random.Random(0))
    precisions = ["fp32", "bf16"] + (["fp16"] if dev.type == "cuda" else [])
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"{args.space} {inp.height}x{inp.width}, batch {args.batch}, {name}")
    print(f"{'sub-network':12} " + " ".join(f"{p + ' img/s':>11}" for p in precisions) + "   ratio to fp32")
    for kind, arch in archs.items():
        net.activate(arch)
        speed = {}
        for p in precisions:
            check_precision(p, dev)
            scaler = grad_scaler(dev, p)
            for i in range(2 + args.steps):
                if i == 2:
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                with autocast(dev, p):
                    logits = net(x)
                scaler.scale(F.cross_entropy(logits.float(), y)).backward()
                scaler.step(opt)
                scaler.update()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            speed[p] = args.batch * args.steps / (time.perf_counter() - t0)
        ratios = " ".join(f"{p} x{speed[p] / speed['fp32']:.2f}" for p in precisions[1:])
        print(f"{kind:12} " + " ".join(f"{speed[p]:11.1f}" for p in precisions) + f"   {ratios}")


if __name__ == "__main__":
    main()

"""One torchrun worker of ``test_ddp.py`` (2 gloo processes on the CPU): the sliced SyncBN against
plain BN on the concatenated batch (float64), then data-parallel training runs whose files the
test compares with one-process runs. ``python -m torch.distributed.run --standalone
--nproc_per_node 2 tests/train/ddp_worker.py SPEC.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from trionet_dsl import load, load_arch
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.nn.ops.sliced import SlicedBatchNorm2d
from trionet_dsl.nn.ops.sync_bn import convert_sync_bn
from trionet_dsl.train import TrainConfig, train


def sync_bn_errors() -> dict[str, list[float]]:
    """Max |difference| of output, input grad, gamma/beta grads (summed over ranks, as the
    gradient averaging does up to the 1/world factor) and running stats, sync vs plain BN."""
    r, w = dist.get_rank(), dist.get_world_size()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, 5, 5, generator=gen, dtype=torch.float64) * 3 + 2  # |mean| near std: a real test
    dy = torch.randn(8, 6, 5, 5, generator=gen, dtype=torch.float64)
    out: dict[str, list[float]] = {}
    cases = {"prefix": None, "grid": torch.tensor([0, 3, 5, 7, 9, 10]), "full": None}
    for name, index in cases.items():
        features = 6 if name == "full" else 12
        ref = SlicedBatchNorm2d(features).double()
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5, generator=gen)
            ref.bias.uniform_(-1, 1, generator=gen)
            ref.running_mean.uniform_(-1, 1, generator=gen)
        bn = convert_sync_bn(SlicedBatchNorm2d(features).double())
        bn.load_state_dict(ref.state_dict())
        part = slice(r * 8 // w, (r + 1) * 8 // w)
        errs: list[float] = []
        for _ in range(2):  # a second step starts from updated running statistics
            for m in (ref, bn):
                m.zero_grad(set_to_none=True)
            xr = x.clone().requires_grad_()
            yr = ref(xr, index)
            (yr * dy).sum().backward()
            xs = x[part].clone().requires_grad_()
            ys = bn(xs, index)
            (ys * dy[part]).sum().backward()
            gw, gb = bn.weight.grad.clone(), bn.bias.grad.clone()
            dist.all_reduce(gw)
            dist.all_reduce(gb)
            assert xr.grad is not None and xs.grad is not None and ref.weight.grad is not None
            errs += [
                (yr[part] - ys).abs().max().item(),
                (xr.grad[part] - xs.grad).abs().max().item(),
                (gw - ref.weight.grad).abs().max().item(),
                (gb - ref.bias.grad).abs().max().item(),
                (bn.running_mean - ref.running_mean).abs().max().item(),
                (bn.running_var - ref.running_var).abs().max().item(),
            ]
        out[name] = errs
    return out


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    root = Path(spec["out"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    errors = sync_bn_errors()
    if dist.get_rank() == 0:
        (root / "sync_bn.json").write_text(json.dumps(errors))
    # train() below runs in this group (one made under torchrun stays up for the process's life)

    space = load(spec["space"])
    data = load_dataset(spec["npz"], space, 0.2, seed=0)
    arch = load_arch(spec["arch"], spec["space"])
    super_cfg = TrainConfig(**spec["super_cfg"])
    arch_cfg = TrainConfig(**spec["arch_cfg"])
    steps = spec["steps"]
    train(space, data, super_cfg, root / "super", progress=False, steps=steps)
    train(arch, data, arch_cfg, root / "arch", progress=False, steps=steps)
    train(space, data, super_cfg, root / "cut", progress=False, steps=spec["cut_at"])
    train(space, data, super_cfg, root / "cut", progress=False, steps=steps, resume=True)


if __name__ == "__main__":
    main()

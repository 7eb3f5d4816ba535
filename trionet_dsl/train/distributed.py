"""``torch.distributed`` for the jobs: am I under torchrun, which rank, how many; and for
data-parallel training, split the batch and average the gradients.

Every function also works outside torchrun (one process: rank 0 of a world of 1), so a job
calls them unconditionally; ``rank``/``world`` read torchrun's environment when no group is
joined (yet, or any more), so "only rank 0 prints" holds around the group's lifetime too.
The process group is the one torchrun's environment describes (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``; :func:`init_from_env`) or one the caller made;
multi-node runs come from torchrun's own rendezvous, nothing here. Nothing here keeps state of
its own: every question is asked of ``torch.distributed`` or of torchrun's environment.

Why the supernet's gradients are averaged by hand and not by ``DistributedDataParallel``: every
rank activates the same sub-network in a step (seeded by ``(seed, epoch, step)``), so the
parameters that got a gradient are the same set on every rank, and one ``all_reduce`` of exactly
those gradients after the step's backward passes (a sandwich step runs several) is the whole
synchronisation. DDP with ``find_unused_parameters=True`` would traverse the autograd graph every
step to find the unused ones, reduce once per backward, and hand *zero* gradients to parameters
the step did not use, which SGD's momentum and weight decay would then move; the one-process loop
leaves them with ``grad=None`` (``zero_grad(set_to_none=True)``), which the optimizers skip. The
hand-made reduction keeps that: a parameter without a gradient stays untouched on every rank.
A fixed arch uses every parameter in every step and is wrapped in plain DDP.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from trionet_dsl.lang.errors import SpaceError

BUCKET_ELEMENTS = 1 << 24
"""Gradients are reduced in flat buckets of at most this many elements (64 MiB of fp32)."""


def launched() -> bool:
    """True inside a process that ``torchrun`` started (its environment names a world)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def active() -> bool:
    """A process group is initialised (by :func:`init_from_env` or by the caller)."""
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    """Processes in the job: the group's size, else torchrun's ``WORLD_SIZE`` (1 outside torchrun)."""
    return dist.get_world_size() if active() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank: in the group, else torchrun's ``RANK`` (0 outside torchrun), so it
    holds before the group is joined and after it is left."""
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``): which GPU it takes."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the one process that prints progress and writes results."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if active() and world() > 1:
        dist.barrier()


def rank_device(name: str | torch.device = "auto") -> torch.device:
    """``--device`` for this rank: under torchrun ``auto`` and ``cuda`` (no index) mean this rank's
    own GPU, ``cuda:LOCAL_RANK``; a fixed ``cuda:N`` that several ranks would share is refused."""
    from trionet_dsl.train.device import resolve_device

    dev = resolve_device(name)
    if dev.type != "cuda" or world() == 1:
        return dev
    text = str(name).strip().lower()
    if text in ("auto", "cuda"):
        index = local_rank()
        if index >= torch.cuda.device_count():
            raise SpaceError(
                f"process {rank()} (local rank {index}) has no GPU: {torch.cuda.device_count()} visible",
                hint="start at most one process per GPU (--nproc_per_node)",
            )
        return torch.device("cuda", index)
    if dev.index != local_rank():
        raise SpaceError(
            f"--device {text} under {world()} processes: process {rank()} would share another's GPU",
            hint="give --device cuda (or auto): each process then takes the GPU of its LOCAL_RANK",
        )
    return dev


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun described, once; False when not launched by torchrun
    with more than one process. ``backend`` default: NCCL with CUDA, else gloo.

    The group then stays up for the process's life (:func:`cleanup` at a command's end): under
    torchrun, tearing one down and making another in the same process races on the rendezvous
    store (seen here: a rank dialling the previous group's closed port), so a second ``train``
    in one worker reuses the first one's group."""
    if active():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return True


def init(device: torch.device) -> None:
    """:func:`init_from_env` for a training run on ``device``: gloo carries CPU tensors; with a
    GPU, NCCL carries CUDA ones and gloo the few CPU scalars (``cpu:gloo,cuda:nccl``)."""
    if device.type == "cuda" and launched() and not active():
        torch.cuda.set_device(device)
        init_from_env("cpu:gloo,cuda:nccl")
    else:
        init_from_env("gloo")


def cleanup() -> None:
    """Leave the process group (a no-op when none was joined)."""
    if active():
        dist.destroy_process_group()


def local_batch(global_batch: int, processes: int) -> int:
    """Each rank's share of ``--batch-size`` (the global batch); it must divide evenly."""
    if global_batch % processes:
        raise SpaceError(
            f"--batch-size {global_batch} does not split over {processes} processes",
            hint=f"--batch-size is the global batch (all processes together): use a multiple of {processes}",
        )
    return global_batch // processes


def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Every rank starts from rank ``src``'s parameters and buffers (as DDP does at wrap time)."""
    if not active() or world() == 1:
        return
    with torch.no_grad():
        for t in module.state_dict(keep_vars=True).values():
            dist.broadcast(t.data, src)


def _buckets(grads: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Consecutive runs of gradients of one dtype and device, at most BUCKET_ELEMENTS each
    (a single larger gradient is a bucket of its own)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for g in grads:
        same = not bucket or (g.dtype == bucket[0].dtype and g.device == bucket[0].device)
        if bucket and (not same or size + g.numel() > BUCKET_ELEMENTS):
            yield bucket
            bucket, size = [], 0
        bucket.append(g)
        size += g.numel()
    if bucket:
        yield bucket


def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients that exist over all ranks, in flat buckets (see the module
    docstring: every rank holds gradients for the same parameters, in the same order)."""
    w = world()
    if not active() or w == 1:
        return
    for bucket in _buckets([p.grad for p in params if p.grad is not None]):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat.div_(w)
        offset = 0
        for g in bucket:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def _comm_device() -> torch.device:
    """Where small tensors must be for a collective: a pure NCCL group only moves GPU memory."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sums over ranks of a few numbers (a step's loss, correct and seen counts), in float64."""
    if not active() or world() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return [float(v) for v in t.cpu().tolist()]


def broadcast_float(value: float, src: int = 0) -> float:
    """Rank ``src``'s value on every rank (the validation accuracy only rank 0 measures)."""
    if not active() or world() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.broadcast(t, src)
    return float(t.item())

"""Data-parallel training on ``torch.distributed``: who am I, split the batch, average the gradients.

A run is distributed when ``torchrun`` started it (it sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``; :func:`init` joins that group) or when the
caller initialised a process group itself. Nothing here keeps state of its own: every question is asked
of ``torch.distributed`` (or of torchrun's environment before the group exists).

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
    """A process group is initialised (by :func:`session` or by the caller)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its own machine (its GPU under torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints, metrics and progress."""
    return rank() == 0


def barrier() -> None:
    if active() and world_size() > 1:
        dist.barrier()


def rank_device(device: torch.device) -> torch.device:
    """Each rank on its own GPU: ``cuda`` (no index) becomes ``cuda:LOCAL_RANK`` under torchrun."""
    if device.type != "cuda" or world_size() == 1:
        return device
    if device.index is not None and "LOCAL_RANK" in os.environ and device.index != local_rank():
        raise SpaceError(
            f"--device {device} under {world_size()} processes: every process would use the same GPU",
            hint="give --device cuda (or auto): each process then takes the GPU of its LOCAL_RANK",
        )
    index = local_rank() if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise SpaceError(
            f"process {rank()} (local rank {index}) has no GPU: {torch.cuda.device_count()} visible",
            hint="start at most one process per GPU (--nproc_per_node)",
        )
    return torch.device("cuda", index)


def init(device: torch.device) -> None:
    """Join the process group torchrun's environment describes, when torchrun launched us and no
    group exists yet (a group the caller made is used as it is). The group then stays up for the
    process's life: under torchrun, tearing one down and making another in the same process races
    on the rendezvous store (seen here: a rank dialling the previous group's closed port), so a
    second ``train`` in one worker reuses the first one's group. Gloo carries CPU tensors, NCCL
    CUDA ones (both are set up when a GPU is in use)."""
    if not launched() or active():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group(backend="gloo")


def cleanup() -> None:
    """Leave the process group (the end of a command: the process exits next)."""
    if active():
        dist.destroy_process_group()


def local_batch(global_batch: int, world: int) -> int:
    """Each rank's share of ``--batch-size`` (the global batch); it must divide evenly."""
    if global_batch % world:
        raise SpaceError(
            f"--batch-size {global_batch} does not split over {world} processes",
            hint=f"--batch-size is the global batch (all processes together): use a multiple of {world}",
        )
    return global_batch // world


def shard(t: torch.Tensor, rank_: int, world: int) -> torch.Tensor:
    """Rank ``rank_``'s contiguous share of a global batch: the ranks' shards, in rank order,
    concatenate back to the batch one process would take (a DistributedSampler-style split of
    the same seeded permutation)."""
    if world == 1:
        return t
    n = len(t) // world
    return t[rank_ * n : (rank_ + 1) * n]


def broadcast_state(module: nn.Module, src: int = 0) -> None:
    """Every rank starts from rank ``src``'s parameters and buffers (as DDP does at wrap time)."""
    if not active() or world_size() == 1:
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
    world = world_size()
    if not active() or world == 1:
        return
    for bucket in _buckets([p.grad for p in params if p.grad is not None]):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat.div_(world)
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
    if not active() or world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return [float(v) for v in t.cpu().tolist()]


def broadcast_float(value: float, src: int = 0) -> float:
    """Rank ``src``'s value on every rank (the validation accuracy only rank 0 measures)."""
    if not active() or world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.broadcast(t, src)
    return float(t.item())

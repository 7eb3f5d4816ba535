"""The few ``torch.distributed`` facts a job needs: am I under torchrun, which rank, how many.

Every function also works outside torchrun (one process: rank 0 of a world of 1), so a job
calls them unconditionally; ``rank``/``world`` read torchrun's environment when no group is
joined (yet, or any more), so "only rank 0 prints" holds around the group's lifetime too.
The process group is the one torchrun's environment describes
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``); multi-node runs come from
torchrun's own rendezvous, nothing here.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    """Processes in the job: the group's size, else torchrun's ``WORLD_SIZE`` (1 outside torchrun)."""
    return dist.get_world_size() if _active() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank: in the group, else torchrun's ``RANK`` (0 outside torchrun), so it
    holds before the group is joined and after it is left."""
    return dist.get_rank() if _active() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``): which GPU it takes."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the one process that prints progress and writes results."""
    return rank() == 0


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun described, once; False when not launched by torchrun
    with more than one process. ``backend`` default: NCCL with CUDA, else gloo."""
    if _active():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return True


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if _active():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (a no-op when none was joined)."""
    if _active():
        dist.destroy_process_group()

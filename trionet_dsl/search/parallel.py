"""Evaluating a batch of proposals on every rank of a torchrun job.

Rank 0 runs the strategy and the driver; the other ranks only evaluate. For each batch,
rank 0 broadcasts the candidates, candidate ``i`` is evaluated on rank ``i % world``, and
the results come back to rank 0 in the candidates' order. The split is a pure function of
the batch, and an evaluation depends only on the arch (the evaluators are seeded by the
search's seed, never by the rank), so the results — and what the strategy is told, in what
order — are those of one process evaluating the same batches: a search is reproducible for
a given seed and batch size whatever the number of processes.

Only picklable Python objects travel (archs and result dicts), so the group may be gloo even
on GPUs. An evaluation that fails on any rank is reported by rank 0 with the rank and arch;
rank 0 stopping for any reason tells the other ranks, which then stop too instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.base import arch_key

Result = dict[str, float]
_EVAL, _STOP = "evaluate", "stop"


class StoppedByRankZero(SpaceError):
    """A non-zero rank's search ended because rank 0 stopped (rank 0 reports why)."""


def shares(n: int, world: int) -> list[list[int]]:
    """Candidate indices of each rank: ``i`` goes to rank ``i % world``."""
    return [list(range(r, n, world)) for r in range(world)]


def _evaluate_share(evaluate: Callable[[Arch], Result], archs: list[Arch], mine: list[int]) -> list[Any]:
    """This rank's results, or ``("error", index, message)`` for the first evaluation that failed."""
    out: list[Any] = []
    for i in mine:
        try:
            out.append(evaluate(archs[i]))
        except Exception as exc:  # reported by rank 0, with the rank and the arch
            return [("error", i, f"{type(exc).__name__}: {exc}")]
    return out


class DistributedEvaluations:
    """Rank 0's side: ``self(archs)`` evaluates a batch across the ranks; ``close()`` releases them."""

    def __init__(self, evaluate: Callable[[Arch], Result], comm: Any = None) -> None:
        """``comm``: what provides the collectives (default ``torch.distributed``; tests pass a fake)."""
        if comm is None:
            import torch.distributed as comm
        self.evaluate, self.dist = evaluate, comm
        self.world: int = comm.get_world_size()
        self.closed = False

    def __call__(self, archs: list[Arch]) -> list[Result]:
        msg: list[Any] = [(_EVAL, archs)]
        self.dist.broadcast_object_list(msg, src=0)
        split = shares(len(archs), self.world)
        mine = _evaluate_share(self.evaluate, archs, split[0])
        gathered: list[Any] = [None] * self.world
        self.dist.gather_object(mine, gathered, dst=0)
        results: list[Result | None] = [None] * len(archs)
        for r, (idx, res) in enumerate(zip(split, gathered, strict=True)):
            if res and isinstance(res[0], tuple) and res[0][0] == "error":
                _, i, message = res[0]
                raise SpaceError(
                    f"rank {r} failed to evaluate {arch_key(archs[i])}: {message}",
                    hint="the search history keeps every batch finished before; fix the cause and --resume",
                )
            for i, one in zip(idx, res, strict=True):
                results[i] = one
        assert all(r is not None for r in results)  # every index is in exactly one share
        return [r for r in results if r is not None]

    def close(self, error: str | None = None, result: Any = None) -> None:
        """Tell the other ranks the search is over: ``result`` is what their ``serve`` returns;
        ``error``: rank 0 stopped because of it, and they raise StoppedByRankZero."""
        if self.closed:
            return
        self.closed = True
        self.dist.broadcast_object_list([(_STOP, (error, result))], src=0)


def serve(evaluate: Callable[[Arch], Result]) -> Any:
    """A non-zero rank's side: evaluate its share of each batch rank 0 sends until told to stop;
    returns the result rank 0 closed with."""
    import torch.distributed as dist

    me, world = dist.get_rank(), dist.get_world_size()
    while True:
        msg: list[Any] = [None]
        dist.broadcast_object_list(msg, src=0)
        kind, payload = msg[0]
        if kind == _STOP:
            error, result = payload
            if error is not None:
                raise StoppedByRankZero(f"rank {me}: rank 0 stopped the search ({error})")
            return result
        archs: list[Arch] = payload
        mine = _evaluate_share(evaluate, archs, shares(len(archs), world)[me])
        dist.gather_object(mine, None, dst=0)

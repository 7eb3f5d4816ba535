"""Epochs as batches: the seeded order, a rank's share of each batch, DataLoader workers.

The order of epoch ``e`` is ``randperm`` from a generator seeded by ``(seed, e)``; batch ``t``
is positions ``t*B .. (t+1)*B`` of it, and under data parallelism rank ``r`` of ``w`` takes
:func:`shard_indices` of that global batch. Which batch holds which samples is therefore
decided before any worker runs, and what a sample looks like by its own generator (see
:mod:`.samples`): the batches are the same with 0, 1 or 8 workers, and the ranks' shards of
a step concatenate to the one-process batch.

Workers: one ``torch.utils.data.DataLoader`` per bundle, created on first use and kept
(``persistent_workers``), over a dataset whose items are whole batches (``batch_size=None``);
the main process hands it the keys of each pass. Pinned memory when CUDA is present.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.train.data.samples import BatchKey, LoadFailure, Samples


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of ``epoch``: a permutation of ``range(n)`` seeded by ``(seed, epoch)``."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return torch.randperm(n, generator=gen)


def shard_indices(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s share of one global batch among ``world`` processes.

    The ``rank``-th of ``world`` contiguous chunks, ``indices[rank*n//world : (rank+1)*n//world]``:
    the shards of ranks 0..world-1 concatenated give ``indices`` back in order, and their sizes
    differ by at most one. Averaging the ranks' mean losses (DDP) equals the one-process mean
    loss only when ``world`` divides the batch size; the caller should require it.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")
    n = len(indices)
    return indices[rank * n // world : (rank + 1) * n // world]


def batch_keys(
    samples: Samples,
    split: str,
    batch_size: int,
    epoch: int,
    seed: int,
    augment: bool,
    drop_last: bool,
    start: int = 0,
    rank: int = 0,
    world: int = 1,
    limit: int | None = None,
    normalise: bool = True,
) -> Iterator[BatchKey]:
    """The keys of one pass: training shuffled per epoch (and augmented if asked), validation in order."""
    if batch_size < 1:
        raise SpaceError(f"batch size {batch_size} must be at least 1")
    n = len(samples) if limit is None else min(limit, len(samples))
    order = epoch_order(n, seed, epoch) if split == "train" else torch.arange(n)
    stop = n - (n % batch_size if drop_last else 0)
    for i in range(start * batch_size, stop, batch_size):
        idx = shard_indices(order[i : i + batch_size], rank, world)
        if len(idx):
            yield BatchKey(split, idx, epoch, seed, augment and split == "train", normalise)


_Wire = tuple[str, list[int], int, int, bool, bool]
"""A BatchKey as sent to a worker: indices as a list (a tensor would travel through shared
memory, a file descriptor per batch, and a slice would share its whole epoch's order)."""


class _Plan(Sampler[_Wire]):
    """The keys of the current pass; set before each ``iter(loader)``."""

    def __init__(self) -> None:
        self.keys: Iterable[_Wire] = ()

    def __iter__(self) -> Iterator[_Wire]:
        return iter(self.keys)


class _Splits(Dataset):
    """Both splits behind one dataset, so one pool of workers serves training and validation."""

    def __init__(self, train: Samples, val: Samples) -> None:
        self.train, self.val = train, val

    def __getitem__(self, wire: _Wire) -> tuple[torch.Tensor, torch.Tensor] | LoadFailure:
        split, indices, epoch, seed, augment, normalise = wire
        key = BatchKey(split, torch.tensor(indices, dtype=torch.long), epoch, seed, augment, normalise)
        return (self.train if split == "train" else self.val).load(key)


def _worker_heap(worker_id: int) -> None:
    """In each DataLoader worker: serve allocations over 128 KiB (a batch, a decoded image) by mmap,
    returned to the system when freed. glibc otherwise raises that threshold to the largest block
    freed so far, and batches then come from a heap that fragments: a worker's peak RSS grew
    from 200 to 590 MB over a 20,000-image epoch (``benchmarks/data_rss.py``). Elsewhere: no-op."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (glibc's malloc.h)
    except (OSError, AttributeError):
        pass


def _whole(item: object) -> object:
    """Collation: the dataset already makes whole batches."""
    return item


class WorkerPool:
    """``workers`` persistent DataLoader processes making the batches of whichever pass is asked."""

    def __init__(self, train: Samples, val: Samples, workers: int, pin_memory: bool | None = None) -> None:
        self.plan = _Plan()
        self.loader = DataLoader(
            _Splits(train, val),
            batch_size=None,
            sampler=self.plan,
            num_workers=workers,
            persistent_workers=True,
            pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
            collate_fn=_whole,
            worker_init_fn=_worker_heap,
        )
        self.generation = 0

    def run(self, keys: Iterable[BatchKey]) -> Iterator[tuple[torch.Tensor, torch.Tensor] | LoadFailure]:
        self.generation += 1
        mine = self.generation
        self.plan.keys = ((k.split, k.indices.tolist(), k.epoch, k.seed, k.augment, k.normalise) for k in keys)
        for item in self.loader:  # a new pass resets the (persistent) workers' queue
            if self.generation != mine:
                raise RuntimeError("two passes over one data bundle were interleaved; finish one first")
            yield item

    def close(self) -> None:
        """Stop the worker processes now (else they stop with the bundle)."""
        it = getattr(self.loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self.loader._iterator = None


def failed(item: LoadFailure) -> SpaceError:
    return SpaceError(
        f"cannot decode image {item.path}: {item.reason}",
        file=item.path,
        hint="remove or replace the file and continue with --resume: checkpoints already written are intact",
    )


def run_pass(
    samples: Samples, keys: Iterable[BatchKey], pool: WorkerPool | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Make the batches of ``keys`` in this process (``pool`` None) or in the pool's workers."""
    items = (samples.load(key) for key in keys) if pool is None else pool.run(keys)
    for item in items:
        if isinstance(item, LoadFailure):
            raise failed(item)
        yield item

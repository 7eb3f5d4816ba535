"""One-shot evaluation block by block, reusing the work of architectures that share a prefix.

The one-shot measure (``SupernetEvaluator``) resets BatchNorm, runs the calibration batches
forward in train mode, then the validation split in eval mode. In train mode a BN normalises
with its batch's own statistics, so block ``i``'s outputs on the calibration batches depend only
on its input and its own weights, and its running statistics (a plain average over the batches)
only on the blocks before it: the calibration and validation activations after block ``i`` are a
function of the choices of blocks ``0..i`` alone. Computed block by block over all batches, they
are the same numbers — bit for bit, the same ops on the same batches — as the whole network run
batch by batch, and two architectures that agree on blocks ``0..i`` have the same activations
there.

Evolution's children share most blocks with a parent evaluated shortly before (a mutation
changes one or two blocks), so keeping recent prefixes' activations skips their blocks: on
``trionet_small`` a 100-query evolution search re-uses about a third of its one-shot compute
(``benchmarks/search_throughput.py`` measures the real figure). Random search and TPE share few
prefixes and gain little. The cache is bounded in bytes (least recently used first out); the
activations of a streamed validation set larger than the bound are never cached, and then the
evaluator runs the network batch by batch as before.

Each prefix also keeps the block's BN buffers as calibration left them, so after an evaluation
the supernet's BN statistics are what a full recalibration would have made of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

import torch
from torch import nn

from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.base import PREFIX_CACHE_MB
from trionet_dsl.space.resolve import arch_choices
from trionet_dsl.train.evaluate import reset_bn_for_calibration, restore_bn_momentum

DEFAULT_CACHE_BYTES = PREFIX_CACHE_MB << 20


@dataclass
class _Entry:
    calib: list[torch.Tensor]
    val: list[torch.Tensor]
    buffers: dict[str, torch.Tensor]
    nbytes: int


def _nbytes(ts: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


def _buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.detach().clone() for name, b in module.named_buffers()}


def _restore(module: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, b in module.named_buffers():
            b.copy_(saved[name])


@dataclass
class PrefixCache:
    """Block outputs (calibration and validation) of recent architecture prefixes, bounded in bytes,
    least recently used out first; the stem's, which every architecture shares, are kept apart and
    never evicted (without them nothing is kept at all)."""

    max_bytes: int = DEFAULT_CACHE_BYTES
    stem: _Entry | None = None
    entries: OrderedDict[Hashable, _Entry] = field(default_factory=OrderedDict)
    nbytes: int = 0
    hits: int = 0  # blocks whose work was reused
    misses: int = 0  # blocks computed

    def put_stem(self, entry: _Entry) -> bool:
        """Keep the stem's activations if they fit; False if they do not (then nothing is cached)."""
        if entry.nbytes > self.max_bytes:
            return False
        self.stem = entry
        self.nbytes += entry.nbytes
        return True

    def get(self, key: Hashable) -> _Entry | None:
        got = self.entries.get(key)
        if got is not None:
            self.entries.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return got

    def put(self, key: Hashable, entry: _Entry) -> None:
        """Keep ``entry`` (after the stem's) unless it cannot fit beside the stem's; evict the least
        recently used to make room."""
        if self.stem is None or entry.nbytes + self.stem.nbytes > self.max_bytes:
            return
        self.entries[key] = entry
        self.nbytes += entry.nbytes
        while self.nbytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.nbytes -= old.nbytes

    @property
    def reuse(self) -> float:
        """Fraction of block evaluations answered from the cache."""
        return self.hits / max(1, self.hits + self.misses)


@torch.no_grad()
def layerwise_accuracy(
    net: nn.Module,
    arch: Arch,
    calib: list[torch.Tensor],
    val: list[tuple[torch.Tensor, torch.Tensor]],
    cache: PrefixCache,
) -> float:
    """The accuracy ``recalibrate_bn`` + ``accuracy`` give ``arch`` in ``net`` (a ``Supernet`` with
    ``arch`` active), computed block by block and reusing ``cache``'s prefixes. ``calib``/``val`` are
    the calibration batches and the validation batches, already on the net's device and format."""
    from trionet_dsl.nn.supernet import Supernet

    assert isinstance(net, Supernet)
    stem = cache.stem
    if stem is None:
        stem = _run(net.stem, calib, [x for x, _ in val])
        cache.put_stem(stem)
    else:
        _restore(net.stem, stem.buffers)
    xs_cal, xs_val = stem.calib, stem.val
    key: tuple[Hashable, ...] = ()
    choices = arch_choices(net.space, arch)
    for i, (blk, c) in enumerate(zip(net.bottlenecks(), choices, strict=True)):
        if c is None:  # past the stage's depth: a full recalibration resets its BNs too
            restore_bn_momentum(blk, reset_bn_for_calibration(blk))
            continue
        key = (*key, (i, c.op.signature, c.width, c.heads))
        got = cache.get(key)
        if got is None:
            got = _run(blk, xs_cal, xs_val)
            cache.put(key, got)
        else:
            _restore(blk, got.buffers)
        xs_cal, xs_val = got.calib, got.val
    correct = seen = 0
    for xb, (_, yb) in zip(xs_val, val, strict=True):
        logits = net.head(xb)
        correct += int((logits.argmax(1).cpu() == yb).sum().item())
        seen += len(yb)
    net.eval()
    return correct / max(1, seen)


def _run(module: nn.Module, calib: list[torch.Tensor], val: list[torch.Tensor]) -> _Entry:
    """Recalibrate ``module``'s BNs on ``calib`` (train mode), then run ``val`` through it in eval mode."""
    saved = reset_bn_for_calibration(module)
    module.train()
    out_cal = [module(x) for x in calib]
    restore_bn_momentum(module, saved)
    module.eval()
    out_val = [module(x) for x in val]
    return _Entry(out_cal, out_val, _buffers(module), _nbytes(out_cal) + _nbytes(out_val))

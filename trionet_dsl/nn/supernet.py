"""Resolved space -> weight-sharing supernet; ``activate(arch)`` picks the sub-network.

Sharing, block by block:
* a bottleneck's 1x1 reduce/expand convs and their BNs are shared by every operator choice; a
  sub-network of width ``w`` uses their leading ``w`` channels (Once-for-All / BigNAS
  width slicing);
* each operator choice (``conv(kernel=3)``, ``local(span=7)``, ``axial``) has its own
  weights (the super module its registry entry builds: :mod:`trionet_dsl.lang.operators`)
  and its own BN after it (sliced by width; under Multi-head Sharing, by grid position, and
  the 1x1 expand reads the same positions — see :mod:`trionet_dsl.nn.ops.heads`); attention
  operators share across widths and head counts by Multi-head Sharing (see
  :mod:`trionet_dsl.nn.ops`) or, with ``sharing="prefix"``, by a flat channel prefix.

A ``basic`` block (:class:`SuperBasic`) has no 1x1 layers: each operator choice holds both of its
layers (``in -> widths``, with the stride; ``widths -> out``) and a BN after each. The first layer's
outputs sit where its ``output_index`` says (grid positions under Multi-head Sharing or for a grouped
conv); the second layer reads them, compacted in that order, as its leading input channels, and its
``out`` outputs are again addressed by its ``output_index`` (its head grid) in the BN after it.
Only the projection shortcut is shared.

The forward pass slices weights to the active sub-network: it costs what that
sub-network costs, never the full supernet. Under elastic depth the supernet holds every stage's
largest depth; a sub-network of depth ``d`` skips the stage's blocks from ``d`` on (their shapes
are the stage's output, so the stage's output is block ``d - 1``'s), and extraction builds only
the first ``d``.
"""

from __future__ import annotations

import math
import os
from typing import Literal, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.ir import Arch
from trionet_dsl.lang.operators import REGISTRY
from trionet_dsl.nn.network import BasicBlock, Bottleneck, TrioNet, init_weights, make_downsample, make_stem
from trionet_dsl.nn.ops import SlicedBatchNorm2d, SuperConv2d
from trionet_dsl.nn.ops.heads import check_mode
from trionet_dsl.space.resolve import Choice, ResolvedBlock, ResolvedSpace, arch_choices, check_arch

Sharing = Literal["multihead", "prefix"]


class SuperOperator(Protocol):
    """What a registry entry's super module offers (see :mod:`trionet_dsl.nn.ops.factory`)."""

    @property
    def output_rows(self) -> int: ...

    def output_index(self, width: int, heads: int | None) -> torch.Tensor | None: ...

    def extract(self, width: int, heads: int | None, in_channels: int | None = None) -> nn.Module: ...

    def __call__(self, x: torch.Tensor, width: int, heads: int | None) -> torch.Tensor: ...


def _op_key(signature: str) -> str:
    """ModuleDict keys may not contain '.'; signatures never do, but keep them tidy."""
    return signature.replace("(", "_").replace(")", "").replace("=", "").replace(",", "_").replace(" ", "")


class SuperBottleneck(nn.Module):
    """A bottleneck holding every operator choice of one block at its largest size."""

    def __init__(self, block: ResolvedBlock, sharing: Sharing) -> None:
        super().__init__()
        self.block = block
        wmax = block.max_width
        self.conv1 = SuperConv2d(block.in_channels, wmax, 1, 1)
        self.bn1 = SlicedBatchNorm2d(wmax)
        self.ops = nn.ModuleDict(
            {  # each operator's super module, as its registry entry builds it
                _op_key(o.op.signature): REGISTRY[o.op.kind].make_super(
                    o.op,
                    in_max=wmax,
                    widths=block.widths,
                    heads=o.heads,
                    in_hw=block.in_hw,
                    stride=block.stride,
                    sharing=sharing,
                )
                for o in block.options
            }
        )
        # one BN per operator choice: conv, local and axial outputs have different statistics,
        # and a shared BN's running averages would describe none of them (SPOS-style choice block).
        # Under Multi-head Sharing an attention operator's outputs are addressed by grid position
        # (``output_index``), so its BN and the 1x1 expand's input columns span the whole grid.
        self.bn2 = nn.ModuleDict({key: SlicedBatchNorm2d(self.op_module(key).output_rows) for key in self.ops})
        self.conv3 = SuperConv2d(max(self.op_module(key).output_rows for key in self.ops), block.out_channels, 1, 1)
        self.bn3 = nn.BatchNorm2d(block.out_channels)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(block.in_channels, block.out_channels, 1, stride=block.stride, bias=False),
                nn.BatchNorm2d(block.out_channels),
            )
            if block.has_projection
            else None
        )
        self.select(block.choices[-1])

    def op_module(self, key: str) -> SuperOperator:
        """Operator choice ``key``'s super module (a ModuleDict types its entries as plain Modules)."""
        return cast(SuperOperator, self.ops[key])

    def bn_after(self, key: str) -> SlicedBatchNorm2d:
        """The BN after operator choice ``key``."""
        return cast(SlicedBatchNorm2d, self.bn2[key])

    def select(self, choice: Choice) -> None:
        """Make ``choice`` the block's active sub-block (its operator key is looked up once, here)."""
        self.active = choice
        self._key = _op_key(choice.op.signature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, key = self.active, self._key
        y = F.relu(self.bn1(self.conv1(x, c.width)), inplace=True)
        op = self.op_module(key)
        idx = op.output_index(c.width, c.heads)
        y = op(y, c.width, c.heads)
        y = F.relu(self.bn_after(key)(y, idx), inplace=True)
        y = self.bn3(self.conv3(y, self.block.out_channels, in_index=idx))
        sc = x if self.downsample is None else self.downsample(x)
        return F.relu(y + sc, inplace=True)

    def extract(self) -> Bottleneck:
        """The active choice as a plain :class:`Bottleneck` with copied weights."""
        c, b, key = self.active, self.block, self._key
        idx = self.op_module(key).output_index(c.width, c.heads)
        op = self.op_module(key).extract(c.width, c.heads)
        out = Bottleneck(b.in_channels, c.width, b.out_channels, b.stride, op, b.has_projection)
        with torch.no_grad():
            out.conv1.weight.copy_(self.conv1.sliced_weight(c.width, b.in_channels))
            out.bn1.load_state_dict(self.bn1.extract(c.width).state_dict())
            out.bn2.load_state_dict(self.bn_after(key).extract(c.width, idx).state_dict())
            out.conv3.weight.copy_(self.conv3.sliced_weight(b.out_channels, c.width, idx))
            out.bn3.load_state_dict(self.bn3.state_dict())
            if self.downsample is not None:
                out.downsample.load_state_dict(self.downsample.state_dict())
        return out


class SuperBasic(nn.Module):
    """A basic block holding every operator choice of one block at its largest size (module docstring)."""

    def __init__(self, block: ResolvedBlock, sharing: Sharing) -> None:
        super().__init__()
        self.block = block
        out = (block.out_channels,)

        def make(o, in_max: int, widths: tuple[int, ...], in_hw: tuple[int, int], stride: int) -> nn.Module:
            return REGISTRY[o.op.kind].make_super(
                o.op, in_max=in_max, widths=widths, heads=o.heads, in_hw=in_hw, stride=stride, sharing=sharing
            )

        keys = [_op_key(o.op.signature) for o in block.options]
        self.op1 = nn.ModuleDict(
            {
                k: make(o, block.in_channels, block.widths, block.in_hw, block.stride)
                for k, o in zip(keys, block.options, strict=True)
            }
        )
        self.op2 = nn.ModuleDict(
            {k: make(o, block.max_width, out, block.out_hw, 1) for k, o in zip(keys, block.options, strict=True)}
        )
        self.bn1 = nn.ModuleDict({k: SlicedBatchNorm2d(self.layer(1, k).output_rows) for k in keys})
        self.bn2 = nn.ModuleDict({k: SlicedBatchNorm2d(self.layer(2, k).output_rows) for k in keys})
        self.downsample = make_downsample(block.in_channels, block.out_channels, block.stride, block.has_projection)
        self.select(block.choices[-1])

    @property
    def last_bn(self) -> nn.ModuleDict:
        """The BNs before the residual add, one per operator (zeroed by ``zero_init_residual``)."""
        return self.bn2

    def layer(self, n: int, key: str) -> SuperOperator:
        return cast(SuperOperator, (self.op1 if n == 1 else self.op2)[key])

    def bn(self, n: int, key: str) -> SlicedBatchNorm2d:
        return cast(SlicedBatchNorm2d, (self.bn1 if n == 1 else self.bn2)[key])

    def select(self, choice: Choice) -> None:
        """Make ``choice`` the block's active sub-block."""
        self.active = choice
        self._key = _op_key(choice.op.signature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, key, out = self.active, self._key, self.block.out_channels
        first, second = self.layer(1, key), self.layer(2, key)
        y = first(x, c.width, c.heads)
        y = F.relu(self.bn(1, key)(y, first.output_index(c.width, c.heads)), inplace=True)
        y = self.bn(2, key)(second(y, out, c.heads), second.output_index(out, c.heads))
        return F.relu(y + self.downsample(x), inplace=True)

    def extract(self) -> BasicBlock:
        """The active choice as a plain :class:`BasicBlock` with copied weights."""
        c, b, key = self.active, self.block, self._key
        first, second = self.layer(1, key), self.layer(2, key)
        ops = (
            first.extract(c.width, c.heads, in_channels=b.in_channels),
            second.extract(b.out_channels, c.heads, in_channels=c.width),
        )
        blk = BasicBlock(b.in_channels, c.width, b.out_channels, b.stride, ops, b.has_projection)
        with torch.no_grad():
            blk.bn1.load_state_dict(self.bn(1, key).extract(c.width, first.output_index(c.width, c.heads)).state_dict())
            idx2 = second.output_index(b.out_channels, c.heads)
            blk.bn2.load_state_dict(self.bn(2, key).extract(b.out_channels, idx2).state_dict())
            blk.downsample.load_state_dict(self.downsample.state_dict())
        return blk.train(self.training)


def default_memory_budget() -> int:
    """Half of the machine's physical memory in bytes (8 GiB where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def memory_estimate(space: ResolvedSpace, sharing: str = "multihead") -> tuple[int, int]:
    """(parameter bytes, activation bytes of one sample) of the supernet at float32, without building it.

    Parameters count once for the weights, once for their gradients and once for the optimiser's
    momentum; activations are every block's input, inner (largest width, twice) and output maps
    plus the input and stem maps, which a training step keeps for backward. It is a lower bound
    (tested): on ``trionet_small``'s largest sub-networks backward really keeps 1.8 times that for all-conv,
    4.5 times for all-axial and 13.7 times for all-local (BN inputs, attention logits, unfolded neighbourhoods);
    it is meant to refuse the hopeless case cheaply, not to promise a fit.
    """
    from trionet_dsl.space.cost import supernet_params

    param_bytes = 3 * 4 * supernet_params(space, sharing)
    inp = space.space.input
    floats = inp.channels * inp.height * inp.width
    floats += sum(math.prod(step.out_shape) for step in space.stem)
    for b in space.blocks:
        (h, w), (oh, ow) = b.in_hw, b.out_hw
        floats += b.in_channels * h * w + 2 * b.max_width * h * w + b.out_channels * oh * ow
    return param_bytes, 4 * floats


def check_memory(
    space: ResolvedSpace, sharing: str = "multihead", max_memory: int | None = None, batch_size: int = 1
) -> None:
    """Refuse, before any allocation, a supernet whose estimated memory exceeds ``max_memory`` bytes.

    Activations scale with the batch a training step holds for backward (``batch_size`` samples).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    budget = default_memory_budget() if max_memory is None else max_memory
    param_bytes, sample_bytes = memory_estimate(space, sharing)
    act_bytes = sample_bytes * batch_size
    if param_bytes + act_bytes > budget:
        gib = 2**30
        per = "one sample" if batch_size == 1 else f"a batch of {batch_size}"
        raise SpaceError(
            f"space '{space.name}': its supernet needs an estimated {param_bytes / gib:.2f} GiB for parameters "
            f"(weights, gradients, momentum) and {act_bytes / gib:.2f} GiB of activations for {per}, "
            f"over the memory budget of {budget / gib:.2f} GiB",
            file=space.name,
            hint="use a smaller input or batch, fewer or narrower blocks, or raise the budget (--max-memory)",
        )


class Supernet(nn.Module):
    """All sub-networks of a space in one module; see the module docstring for the sharing."""

    def __init__(
        self,
        space: ResolvedSpace,
        sharing: Sharing = "multihead",
        seed: int | None = None,
        max_memory: int | None = None,
        batch_size: int = 1,
    ) -> None:
        check_mode(sharing)
        check_memory(space, sharing, max_memory, batch_size)  # before any allocation
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        self.space = space
        self.sharing = sharing
        self.stem = make_stem(space)
        self.blocks = nn.ModuleList(
            SuperBasic(b, sharing) if b.kind == "basic" else SuperBottleneck(b, sharing) for b in space.blocks
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(space.final_channels, space.space.classes)
        init_weights(self)
        self._arch: Arch | None = None
        self._on: tuple[bool, ...] = (True,) * len(space.blocks)  # blocks within the active depths

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, space: ResolvedSpace) -> Supernet:
        """The supernet a ``trionet train`` checkpoint (as ``load_checkpoint`` returns it) holds.

        The caller checks that the checkpoint belongs to ``space``; the messages differ by use.
        """
        net = cls(space, sharing=checkpoint.get("sharing", "multihead"))
        load_weights(net, checkpoint["model"])
        return net

    def activate(self, arch: Arch) -> Supernet:
        """Select the sub-network ``arch`` (checked against the space) for later forwards."""
        arch = check_arch(self.space, arch)
        choices = arch_choices(self.space, arch)
        for blk, c in zip(self.bottlenecks(), choices, strict=True):
            if c is not None:  # a block past its stage's depth keeps its last choice, unused
                blk.select(c)
        self._on = tuple(c is not None for c in choices)
        self._arch = arch
        return self

    def bottlenecks(self) -> list[SuperBottleneck | SuperBasic]:
        """The blocks, typed (a ModuleList types its entries as plain Modules); basic blocks included."""
        return cast(list[SuperBottleneck | SuperBasic], list(self.blocks))

    @property
    def active_arch(self) -> Arch | None:
        return self._arch

    def active_blocks(self) -> list[SuperBottleneck | SuperBasic]:
        """The blocks the active sub-network runs (all of them until one is activated)."""
        return [blk for blk, on in zip(self.bottlenecks(), self._on, strict=True) if on]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for blk in self.active_blocks():
            x = blk(x)
        return self.head(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the last block's output: global average pool, then the classifier."""
        return self.fc(torch.flatten(self.pool(x), 1))


def load_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``load_state_dict`` whose key or shape mismatch is a SpaceError, not a traceback."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        raise SpaceError(
            "the checkpoint's weights do not fit this network: " + (lines[0][:300] if lines else "mismatch"),
            hint="use a checkpoint written by `trionet train` for this space (and this version of trionet-dsl)",
        ) from None


def extract(supernet: Supernet, arch: Arch | None = None) -> TrioNet:
    """A standalone copy of one sub-network: only its operators, weights sliced and cloned.

    In eval mode its outputs equal the supernet's with ``arch`` active.
    """
    if arch is not None:
        supernet.activate(arch)
    if supernet.active_arch is None:
        raise ValueError("no sub-network is active: pass an arch or call supernet.activate(arch) first")
    space = supernet.space
    blocks = [blk.extract() for blk in supernet.active_blocks()]
    model = TrioNet(make_stem(space), blocks, space.final_channels, space.space.classes)
    with torch.no_grad():
        model.stem.load_state_dict(supernet.stem.state_dict())
        model.fc.load_state_dict(supernet.fc.state_dict())
    model.train(supernet.training)
    return model

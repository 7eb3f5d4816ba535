"""Semantic checks and resolution: IR -> concrete per-block choice sets.

Resolution applies the three levels of defaults (space ``block`` -> stage -> ``block N``
override), turns widths written as ranges and multipliers into channel counts, and
propagates channels and spatial sizes through the backbone. Everything downstream
(graph, supernet, cost model, sampling) reads the resolved form, never re-deriving it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from trionet_dsl.lang.errors import SpaceError, did_you_mean
from trionet_dsl.lang.ir import (
    Arch,
    ArchBlock,
    BlockSpec,
    ChannelRange,
    Channels,
    Multiplier,
    Op,
    Space,
    StemAttention,
    StemConv,
    StemPool,
)
from trionet_dsl.lang.operators import REGISTRY
from trionet_dsl.lang.parser import SourceMap


@dataclass(frozen=True)
class OpOption:
    """An operator of a block with the head counts it may use (``()`` for one without heads)."""

    op: Op  # heads stripped: identity only
    heads: tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    """One (operator, width, heads) point of a block."""

    op: Op
    width: int
    heads: int | None


@dataclass(frozen=True)
class ResolvedBlock:
    """A block with every default applied and every shape known.

    ``kind`` ``"bottleneck"``: 1x1 ``in -> width``, the operator ``width -> width`` (stride), 1x1
    ``width -> out``. ``"basic"``: the operator twice, ``in -> width`` (stride) then ``width -> out``.
    """

    stage: str
    index: int
    in_channels: int
    out_channels: int
    stride: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    widths: tuple[int, ...]
    options: tuple[OpOption, ...]
    kind: str = "bottleneck"
    optional: bool = False
    """Past its stage's smallest depth choice: a sub-network may end the stage before it."""

    @property
    def key(self) -> str:
        return f"{self.stage}.{self.index}"

    @property
    def has_projection(self) -> bool:
        """A 1x1 projection shortcut is needed when the shape changes (as in ResNet)."""
        return self.stride != 1 or self.in_channels != self.out_channels

    @cached_property
    def choices(self) -> tuple[Choice, ...]:
        """Every (op, width, heads) combination, operator-major, in declaration order."""
        out = []
        for opt in self.options:
            for w in self.widths:
                for h in opt.heads or (None,):
                    out.append(Choice(opt.op, w, h))
        return tuple(out)

    def arch_block(self, choice: Choice) -> ArchBlock:
        """This block fixed to ``choice``, as an arch file states it."""
        return ArchBlock(stage=self.stage, index=self.index, op=choice.op, width=choice.width, heads=choice.heads)

    @property
    def num_choices(self) -> int:
        return sum(len(self.widths) * max(1, len(o.heads)) for o in self.options)

    def option(self, op: Op) -> OpOption | None:
        sig = op.signature
        for o in self.options:
            if o.op.signature == sig:
                return o
        return None

    @property
    def max_width(self) -> int:
        return max(self.widths)


@dataclass(frozen=True)
class StemStep:
    """One stem layer with its padding and the (C, H, W) shapes around it."""

    index: int
    layer: StemConv | StemPool | StemAttention
    padding: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]


@dataclass(frozen=True)
class ResolvedSpace:
    """A validated space: the IR plus its resolved blocks and stem geometry."""

    space: Space
    stem_channels: int
    stem_hw: tuple[int, int]
    blocks: tuple[ResolvedBlock, ...]

    @cached_property
    def stem(self) -> tuple[StemStep, ...]:
        """The stem's layers with padding and shapes (what the model, graph and cost model use)."""
        return stem_steps(self.space)

    @cached_property
    def by_key(self) -> dict[str, ResolvedBlock]:
        return {b.key: b for b in self.blocks}

    @property
    def name(self) -> str:
        return self.space.name

    @property
    def final_channels(self) -> int:
        return self.blocks[-1].out_channels if self.blocks else self.stem_channels

    @cached_property
    def depth_choices(self) -> dict[str, tuple[int, ...]]:
        """Stage name -> its depth choices, ascending (one, the stage's blocks, when it is fixed)."""
        return {st.name: st.depth_choices for st in self.space.stages}

    @cached_property
    def elastic(self) -> tuple[str, ...]:
        """The stages of elastic depth (more than one depth choice), in order."""
        return tuple(n for n, d in self.depth_choices.items() if len(d) > 1)

    @cached_property
    def by_stage(self) -> dict[str, tuple[ResolvedBlock, ...]]:
        """Stage name -> its blocks (at the largest depth), in order."""
        out: dict[str, list[ResolvedBlock]] = {st.name: [] for st in self.space.stages}
        for b in self.blocks:
            out[b.stage].append(b)
        return {k: tuple(v) for k, v in out.items()}

    def stage_size(self, stage: str) -> int:
        """Sub-networks of one stage: the sum over its depths ``d`` of the product of the choice
        counts of its first ``d`` blocks (blocks past the depth do not exist, so do not multiply)."""
        counts = [b.num_choices for b in self.by_stage[stage]]
        return sum(math.prod(counts[:d]) for d in self.depth_choices[stage])

    @property
    def size(self) -> int:
        """Number of distinct architectures (exact): the product of the stages' sizes; without elastic
        depth, of the per-block choice counts."""
        return math.prod(self.stage_size(st.name) for st in self.space.stages)

    def depths(self, arch: Arch) -> dict[str, int]:
        """Stage name -> the depth ``arch`` has there (its stated depth, else the stage's largest)."""
        return {name: arch.depths.get(name, d[-1]) for name, d in self.depth_choices.items()}

    def active(self, arch: Arch) -> tuple[bool, ...]:
        """Per resolved block: whether it exists in ``arch`` (its index is below the stage's depth)."""
        depth = self.depths(arch)
        return tuple(b.index < depth[b.stage] for b in self.blocks)


MAX_BLOCKS = 4096
MAX_CHOICES = 2**18
"""Most (block, choice) pairs a space may have, summed over its blocks: the cost model and the
supernet tabulate each one, so this bounds their work (a few seconds) whatever the text says."""
"""Most blocks a space may have in all (resolution is linear in it)."""
MAX_WIDTH_CHOICES = 4096
"""Most width choices one block may have."""


def stem_padding(kernel: int) -> int:
    """Padding of a stem conv or pool: ``(k - 1) // 2``.

    That is ``k // 2`` for an odd kernel (the size is kept at stride 1: torchvision's ResNet
    stem pads its 7x7 conv by 3 and its 3x3 max-pool by 1) and ``k // 2 - 1`` for an even one
    (0 for 2x2, as 2x2/2 pooling layers are used; 1 for 4x4), so ``k x k / k`` layers tile
    the input exactly.
    """
    return (kernel - 1) // 2


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output length of a stem conv/pool padded by :func:`stem_padding` (PyTorch's floor formula)."""
    return (size + 2 * stem_padding(kernel) - kernel) // stride + 1


def stem_steps(space: Space) -> tuple[StemStep, ...]:
    """Stem geometry, the single source of truth: padding and shapes of each layer.

    Assumes kernels and strides >= 1 (``resolve`` checks them first); sizes below 1 are
    returned as computed, for ``resolve`` to report.
    """
    c, h, w = space.input.channels, space.input.height, space.input.width
    out = []
    for i, layer in enumerate(space.stem):
        oc = layer.channels if isinstance(layer, StemConv | StemAttention) else c
        if isinstance(layer, StemAttention):  # attention keeps the size; its pool rounds up (ceil_mode)
            oh, ow = -(-h // layer.stride), -(-w // layer.stride)
        else:
            oh, ow = conv_out(h, layer.kernel, layer.stride), conv_out(w, layer.kernel, layer.stride)
        out.append(StemStep(i, layer, stem_padding(layer.kernel), (c, h, w), (oc, oh, ow)))
        c, h, w = oc, oh, ow
    return tuple(out)


def _merge(*specs: BlockSpec) -> BlockSpec:
    fields: dict = {}
    for s in specs:
        for k in ("ops", "width", "heads"):
            v = getattr(s, k)
            if v is not None:
                fields[k] = v
    return BlockSpec(**fields)


def _spec_path(space: Space, stage_i: int, index: int, field: str) -> str:
    """The most specific place in the source where ``field`` of a block was set."""
    st = space.stages[stage_i]
    for o in st.overrides:
        if o.index == index and getattr(o.spec, {"op": "ops"}.get(field, field)) is not None:
            return f"stage.{st.name}.block.{index}.{field}"
    if getattr(st.spec, {"op": "ops"}.get(field, field)) is not None:
        return f"stage.{st.name}.{field}"
    if getattr(space.block.spec, {"op": "ops"}.get(field, field)) is not None:
        return f"block.{field}"
    return f"stage.{st.name}"


def _widths(items, base: int, err) -> tuple[int, ...]:
    out: list[int] = []
    seen: set[int] = set()
    for it in items:
        if isinstance(it, Channels):
            vals: range | list[int] = [it.value]
        elif isinstance(it, ChannelRange):
            if it.step < 1 or it.stop < it.start:
                raise err(
                    f"width range {it.start}..{it.stop} step {it.step} is empty",
                    "write start..stop with start <= stop and a step >= 1",
                )
            vals = range(it.start, it.stop + 1, it.step)
            if len(out) + len(vals) > MAX_WIDTH_CHOICES:
                raise err(f"more than {MAX_WIDTH_CHOICES} width choices", "use a larger step")
        else:
            assert isinstance(it, Multiplier)
            exact = it.factor * base
            if not math.isfinite(exact) or exact >= 2**31:
                raise err(
                    f"width {it.factor}x of base width {base} is too large",
                    "use a smaller multiplier or an absolute width",
                )
            v = round(exact)
            if v < 1:
                raise err(
                    f"width {it.factor}x of base width {base} is {exact:g} < 1 channel",
                    "use a larger multiplier or an absolute width",
                )
            vals = [v]
        for v in vals:
            if v < 1:
                raise err(f"width {v} is not a channel count", "widths must be >= 1")
            if v in seen:
                raise err(
                    f"width choices resolve to {v} channels twice",
                    "multipliers are rounded to whole channels; list each width once",
                )
            seen.add(v)
            out.append(v)
    return tuple(sorted(out))


def _option(
    op: Op,
    j: int,
    widths: tuple[int, ...],
    block_heads: tuple[int, ...] | None,
    err_at: Callable[..., Callable[..., SpaceError]],
    io: tuple[int, int] | None = None,
    in_hw: tuple[int, int] | None = None,
) -> OpOption:
    """Operator ``j`` of a block checked by its registry entry: sizes, heads, its own rule.

    ``io``: a basic block's (in, out) channels, which its two layers also see: the heads must
    divide ``out`` (the second layer's width) and the operator's rule holds for both."""
    spec = REGISTRY.get(op.kind)
    if spec is None:
        raise err_at("op", f".{j}")(f"unknown operator '{op.kind}'", did_you_mean(op.kind, REGISTRY.names))
    for a in spec.args:
        size = op.arg(a.name)
        if size is not None and size < 1:
            raise err_at("op", f".{j}")(f"{op.signature}: {a.name} must be >= 1")
        if a.odd and size is not None and size % 2 == 0:
            raise err_at("op", f".{j}")(f"{op.signature} has an even size", "kernels and spans must be odd")
    heads: tuple[int, ...] = ()
    if spec.attention:
        heads = op.heads or block_heads or ()
        if not heads:
            raise err_at("op", f".{j}")(
                f"attention operator {op.signature} has no head choices",
                f"add e.g. 'heads 4 | 8' or write it as {op.kind}(heads=8)",
            )
        if min(heads) < 1:
            raise err_at("heads" if op.heads is None else "op", f".{j}.heads")("head counts must be >= 1")
        for wd in widths + (() if io is None else (io[1],)):
            bad = [hd for hd in heads if wd % hd]
            if bad:
                good = [d for d in range(1, min(wd, 64) + 1) if wd % d == 0]
                what = f"width {wd}" if wd in widths else f"the block's {wd} output channels (basic block)"
                raise err_at("heads" if op.heads is None else "op", f".{j}.heads")(
                    f"{bad[0]} heads do not divide {what} ({op.signature})",
                    f"head counts dividing {wd}: {', '.join(map(str, good))}",
                )
    elif op.heads:
        raise err_at("op", f".{j}")(f"{op.kind} takes no heads")
    heads = tuple(sorted(heads))
    seen = widths if io is None else tuple(sorted(set(widths) | set(io)))
    problem = spec.validate(op, widths=seen, heads=heads, in_hw=in_hw)
    if problem:
        message, hint = problem
        raise err_at("op", f".{j}")(f"{op.signature}: {message}", hint)
    return OpOption(op.without_heads(), heads)


def resolve(space: Space, smap: SourceMap | None = None) -> ResolvedSpace:
    """Validate a space and resolve every block; raises SpaceError pointing at the cause."""

    def error(path: str, message: str, hint: str | None = None) -> SpaceError:
        if smap is None:
            return SpaceError(message, file=space.name, hint=hint)
        return smap.error(path, message, hint)

    for i, layer in enumerate(space.stem):
        if layer.stride < 1 or layer.kernel < 1:
            raise error(f"stem.{i}", "stem kernel and stride must be >= 1")
    c, h, w = space.input.channels, space.input.height, space.input.width
    for step in stem_steps(space):
        c, h, w = step.out_shape
        if h < 1 or w < 1:
            raise error(
                f"stem.{step.index}", "the stem shrinks the input below 1 pixel", "use a larger input or fewer strides"
            )
    stem_c, stem_hw = c, (h, w)
    # structural checks the parser also makes, repeated for IR built in Python
    names: set[str] = set()
    total = 0
    for st in space.stages:
        if st.name in names:
            raise error(f"stage.{st.name}", f"duplicate stage name '{st.name}'", "every stage needs its own name")
        names.add(st.name)
        if min(st.blocks, st.width, st.stride, st.expansion or 1) < 1:
            raise error(f"stage.{st.name}", f"stage '{st.name}': blocks, width, stride and expansion must be >= 1")
        if st.depths is not None and (min(st.depths) < 1 or len(set(st.depths)) != len(st.depths)):
            raise error(
                f"stage.{st.name}.attr.blocks",
                f"stage '{st.name}': depth choices {list(st.depths)} must be distinct and >= 1",
                "block 0 always exists (it holds the stage's stride), so the smallest depth is 1",
            )
        total += st.blocks
        if total > MAX_BLOCKS:
            raise error(
                f"stage.{st.name}.attr.blocks",
                f"the space has more than {MAX_BLOCKS} blocks",
                "use fewer blocks per stage",
            )
        seen_ov: set[int] = set()
        for o in st.overrides:
            if not 0 <= o.index < st.blocks or o.index in seen_ov:
                raise error(
                    f"stage.{st.name}.block.{o.index}",
                    f"stage '{st.name}': bad or repeated override of block {o.index}",
                    f"block indices run from 0 to {st.blocks - 1}, each overridden at most once",
                )
            seen_ov.add(o.index)
    blocks: list[ResolvedBlock] = []
    n_choices = 0
    kind = space.block.type
    for si, st in enumerate(space.stages):
        expansion = st.expansion if st.expansion is not None else space.block.expansion
        out_c = st.width * expansion
        overrides = {o.index: o.spec for o in st.overrides}
        min_depth = st.depth_choices[0]
        for bi in range(st.blocks):
            spec = _merge(space.block.spec, st.spec, overrides.get(bi, BlockSpec()))
            key = f"{st.name}.{bi}"

            def err_at(field: str, sub: str = "", si: int = si, bi: int = bi, key: str = key):
                # sub: e.g. ".1" or ".1.heads" -> the operator (argument) itself when recorded
                path = _spec_path(space, si, bi, field) + (sub if field == "op" else "")
                return lambda m, hint=None: error(path, f"block {key}: {m}", hint)

            if not spec.ops:
                raise error(
                    f"stage.{st.name}",
                    f"block {key} has no operator",
                    "add 'op conv(kernel=3)' to the space's block defaults or the stage",
                )
            widths = _widths(spec.width or (Multiplier(factor=1.0),), st.width, err_at("width"))
            stride = st.stride if bi == 0 else 1
            in_c = blocks[-1].out_channels if blocks else stem_c
            io = (in_c, out_c) if kind == "basic" else None
            options = [_option(op, j, widths, spec.heads, err_at, io, (h, w)) for j, op in enumerate(spec.ops)]
            oh, ow = -(-h // stride), -(-w // stride)
            blocks.append(
                ResolvedBlock(
                    st.name, bi, in_c, out_c, stride, (h, w), (oh, ow), widths, tuple(options), kind, bi >= min_depth
                )
            )
            n_choices += blocks[-1].num_choices
            if n_choices > MAX_CHOICES:
                raise err_at("width")(
                    f"the space has more than {MAX_CHOICES:,} choices in all (widths x operators x heads, "
                    "summed over its blocks)",
                    "use fewer widths (e.g. a range with a step: 16..256 step 16) or fewer blocks",
                )
            h, w = oh, ow
    return ResolvedSpace(space, stem_c, stem_hw, tuple(blocks))


def check_arch(rs: ResolvedSpace, arch: Arch, smap: SourceMap | None = None) -> Arch:
    """Check every block of ``arch`` is a point of the space; fills in fixed blocks.

    Returns the arch with blocks in space order (so equal architectures compare equal).
    """

    def error(path: str, message: str, hint: str | None = None) -> SpaceError:
        if smap is None:
            return SpaceError(message, file=arch.name, hint=hint)
        return smap.error(path, message, hint)

    if arch.space != rs.name:
        raise error(
            "arch",
            f"arch '{arch.name}' is of space '{arch.space}', not '{rs.name}'",
            "check the 'of <space>' part of the header",
        )
    for stage, d in arch.depths.items():
        path = f"arch.depth.{stage}"
        choices = rs.depth_choices.get(stage)
        if choices is None:
            raise error(path, f"space '{rs.name}' has no stage '{stage}'", did_you_mean(stage, list(rs.depth_choices)))
        if d not in choices:
            hint = (
                f"depth choices of stage '{stage}': {' | '.join(map(str, choices))}"
                if len(choices) > 1
                else f"stage '{stage}' has a fixed depth of {choices[0]}; drop this line"
            )
            raise error(path, f"stage '{stage}': depth {d} is not a choice of this space", hint)
    depth = rs.depths(arch)
    given = {b.key: b for b in arch.blocks}
    for key, b in given.items():
        path = f"arch.{key}"
        rb = rs.by_key.get(key)
        if rb is None:
            raise error(path, f"space '{rs.name}' has no block {key}", did_you_mean(key, list(rs.by_key)))
        if rb.index >= depth[rb.stage]:
            raise error(
                path,
                f"block {key} is past the depth {depth[rb.stage]} of stage '{rb.stage}'",
                f"a stage of depth {depth[rb.stage]} has blocks {rb.stage}.0 to {rb.stage}.{depth[rb.stage] - 1}: "
                f"drop this line or state a larger depth ('{rb.stage} depth {rb.index + 1}')",
            )
        opt = rb.option(b.op)
        if opt is None:
            raise error(
                f"{path}.op",
                f"block {key}: {b.op.signature} is not a choice of this block",
                f"choices: {' | '.join(o.op.signature for o in rb.options)}",
            )
        if b.width not in rb.widths:
            raise error(
                f"{path}.width",
                f"block {key}: width {b.width} is not a choice of this block",
                f"widths: {', '.join(map(str, rb.widths))}",
            )
        if opt.heads:
            if b.heads is None:
                raise error(
                    path, f"block {key}: {b.op.signature} needs 'heads N'", f"heads: {', '.join(map(str, opt.heads))}"
                )
            if b.heads not in opt.heads:
                raise error(
                    f"{path}.heads",
                    f"block {key}: {b.heads} heads is not a choice of {b.op.signature}",
                    f"heads: {', '.join(map(str, opt.heads))}",
                )
        elif b.heads is not None:
            raise error(f"{path}.heads", f"block {key}: {b.op.signature} takes no heads")
    blocks = []
    missing = []
    for rb in rs.blocks:
        if rb.index >= depth[rb.stage]:
            continue
        if rb.key in given:
            blocks.append(given[rb.key])
        elif rb.num_choices == 1:
            blocks.append(rb.arch_block(rb.choices[0]))
        else:
            missing.append(rb.key)
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        first = rs.by_key[missing[0]]
        hint = (
            "every searchable block needs a line such as: "
            f"{missing[0]} {first.options[0].op.signature} width {first.widths[-1]}"
        )
        if first.stage in rs.elastic and first.stage not in arch.depths:
            shorter = [d for d in rs.depth_choices[first.stage] if d <= first.index]
            if shorter:
                hint += f"; or, for a shallower stage, state its depth: '{first.stage} depth {shorter[-1]}'"
        raise error("end", f"arch '{arch.name}' does not fix block{'s' if len(missing) > 1 else ''} {shown}", hint)
    # canonical: every elastic stage's depth stated, none of a fixed stage (a file may state it)
    depths = {name: depth[name] for name in rs.elastic}
    return arch.model_copy(update={"blocks": tuple(blocks), "depths": depths})


def arch_choices(rs: ResolvedSpace, arch: Arch) -> tuple[Choice | None, ...]:
    """The arch as one Choice per resolved block, None for a block past its stage's depth (assumes
    ``check_arch`` passed)."""
    by = {b.key: b for b in arch.blocks}
    return tuple(
        Choice(by[rb.key].op, by[rb.key].width, by[rb.key].heads) if on else None
        for rb, on in zip(rs.blocks, rs.active(arch), strict=True)
    )

"""Analytic cost model: exact parameters and FLOPs of any sub-network, from the IR alone.

FLOPs are multiply-accumulates (MACs), the convention of the ResNet paper (He et al.
2016, "3.8 x 10^9 FLOPs" for ResNet-50) and of torchvision/fvcore: convolutions, linear
layers and attention products count; BatchNorm, ReLU, softmax, pooling and residual
additions do not. Parameters count trainable tensors only (BN running statistics are
buffers). Each operator's formulas come from its registry entry
(:mod:`trionet_dsl.lang.operators`; the built-ins' are in :mod:`trionet_dsl.space.op_costs`):
plain Python, so the cost model never imports torch.

Costs are tabulated once per (block, choice) when a :class:`CostModel` is made, so
costing an architecture is one table lookup per block (search needs >10k archs/s).
"""

from __future__ import annotations

from dataclasses import dataclass

from trionet_dsl.lang.ir import Arch
from trionet_dsl.lang.operators import REGISTRY
from trionet_dsl.space.op_costs import local_attention_macs, local_attention_params
from trionet_dsl.space.resolve import Choice, ResolvedBlock, ResolvedSpace
from trionet_dsl.space.sharing import check_mode


@dataclass(frozen=True)
class Cost:
    params: int
    flops: int  # multiply-accumulates


def _projection(b: ResolvedBlock) -> Cost:
    """The 1x1/stride conv + BN shortcut of a block whose shape changes (none otherwise)."""
    if not b.has_projection:
        return Cost(0, 0)
    oh, ow = b.out_hw
    return Cost(b.in_channels * b.out_channels + 2 * b.out_channels, oh * ow * b.in_channels * b.out_channels)


def basic_block_cost(b: ResolvedBlock, c: Choice) -> Cost:
    """One basic block: the operator ``in -> width`` (stride) and ``width -> out``, a BN after each, shortcut."""
    spec = REGISTRY[c.op.kind]
    params = spec.count_params(c.op, width=c.width, heads=c.heads, in_hw=b.in_hw, in_channels=b.in_channels)
    flops = spec.count_macs(
        c.op, width=c.width, heads=c.heads, in_hw=b.in_hw, stride=b.stride, in_channels=b.in_channels
    )
    params += spec.count_params(c.op, width=b.out_channels, heads=c.heads, in_hw=b.out_hw, in_channels=c.width)
    flops += spec.count_macs(c.op, width=b.out_channels, heads=c.heads, in_hw=b.out_hw, stride=1, in_channels=c.width)
    params += 2 * c.width + 2 * b.out_channels  # bn1, bn2
    proj = _projection(b)
    return Cost(params + proj.params, flops + proj.flops)


def block_cost(b: ResolvedBlock, c: Choice) -> Cost:
    """One block: a bottleneck's 1x1 reduce, spatial operator, 1x1 expand, BNs, projection shortcut
    (a basic block's: :func:`basic_block_cost`)."""
    if b.kind == "basic":
        return basic_block_cost(b, c)
    (h, w), (oh, ow) = b.in_hw, b.out_hw
    params = b.in_channels * c.width + 2 * c.width  # conv1 + bn1
    flops = h * w * b.in_channels * c.width
    spec = REGISTRY[c.op.kind]
    params += spec.count_params(c.op, width=c.width, heads=c.heads, in_hw=b.in_hw)
    flops += spec.count_macs(c.op, width=c.width, heads=c.heads, in_hw=b.in_hw, stride=b.stride)
    params += 2 * c.width + c.width * b.out_channels + 2 * b.out_channels  # bn2, conv3, bn3
    flops += oh * ow * c.width * b.out_channels
    if b.has_projection:
        params += b.in_channels * b.out_channels + 2 * b.out_channels
        flops += oh * ow * b.in_channels * b.out_channels
    return Cost(params, flops)


def fixed_cost(space: ResolvedSpace) -> Cost:
    """Stem and classifier: the same for every sub-network."""
    sp = space.space
    params = flops = 0
    for step in space.stem:
        if step.layer.kind == "conv":
            (c, _, _), (oc, oh, ow), k = step.in_shape, step.out_shape, step.layer.kernel
            params += c * oc * k * k + 2 * oc  # conv (no bias) + BN
            flops += oh * ow * c * oc * k * k
        elif step.layer.kind == "attention":  # local attention at full resolution, then its pool; + BN
            (c, h, w), oc, layer = step.in_shape, step.out_shape[0], step.layer
            span = layer.op.require("span")
            params += local_attention_params(c, oc, layer.heads, span) + 2 * oc
            flops += local_attention_macs(h, w, c, oc, layer.heads, span)
    params += space.final_channels * sp.classes + sp.classes
    flops += space.final_channels * sp.classes
    return Cost(params, flops)


class CostModel:
    """Per-block cost tables of one space; ``model(arch)`` -> (params, flops)."""

    def __init__(self, space: ResolvedSpace) -> None:
        self.space = space
        self.fixed = fixed_cost(space)
        self.tables: list[dict[tuple[str, int, int | None], tuple[int, int]]] = []
        for b in space.blocks:
            table = {}
            for c in b.choices:
                bc = block_cost(b, c)
                table[(c.op.signature, c.width, c.heads)] = (bc.params, bc.flops)
            self.tables.append(table)
        self.by_key = {b.key: t for b, t in zip(space.blocks, self.tables, strict=True)}
        self._positional = not space.elastic

    def __call__(self, arch: Arch) -> tuple[int, int]:
        """Cost of the blocks ``arch`` lists (those within each stage's depth, as it states them)."""
        p, f = self.fixed.params, self.fixed.flops
        tables = self.tables if self._positional else [self.by_key[ab.key] for ab in arch.blocks]
        for table, ab in zip(tables, arch.blocks, strict=True):
            bp, bf = table[(ab.op.signature, ab.width, ab.heads)]
            p += bp
            f += bf
        return p, f

    def cost(self, arch: Arch) -> Cost:
        return Cost(*self(arch))

    def extremes(self) -> dict[str, int]:
        """Exact min/max params and FLOPs over the whole space.

        Stages are independent, and so are the blocks of one stage at a given depth ``d``: a stage's
        minimum is the least, over its depth choices, of the sum of its first ``d`` blocks' minima
        (its maximum likewise); the space's is the fixed part plus the stages'.
        """
        rs = self.space
        out = {}
        for i, key in ((0, "params"), (1, "flops")):
            lo = hi = getattr(self.fixed, key)
            for stage, blocks in rs.by_stage.items():
                mins = [min(v[i] for v in self.by_key[b.key].values()) for b in blocks]
                maxs = [max(v[i] for v in self.by_key[b.key].values()) for b in blocks]
                lo += min(sum(mins[:d]) for d in rs.depth_choices[stage])
                hi += max(sum(maxs[:d]) for d in rs.depth_choices[stage])
            out[f"{key}_min"], out[f"{key}_max"] = lo, hi
        return out


def arch_cost(space: ResolvedSpace, arch: Arch) -> Cost:
    """Cost of one (checked) arch; build a CostModel once instead when costing many."""
    from trionet_dsl.space.resolve import check_arch

    return CostModel(space).cost(check_arch(space, arch))


def supernet_params(space: ResolvedSpace, sharing: str = "multihead") -> int:
    """Parameters of the supernet itself (every operator at its largest), without building it."""
    check_mode(sharing)
    total = fixed_cost(space).params
    for b in space.blocks:
        wm = b.max_width
        if b.kind == "basic":
            total += _basic_super_params(b, sharing)
            continue
        # outputs each operator's BN and the 1x1 expand address: the head grid under Multi-head Sharing
        rows = [
            REGISTRY[o.op.kind].count_output_rows(o.op, widths=b.widths, heads=o.heads, sharing=sharing)
            for o in b.options
        ]
        total += b.in_channels * wm + 2 * wm + 2 * sum(rows) + max(rows) * b.out_channels + 2 * b.out_channels
        if b.has_projection:
            total += b.in_channels * b.out_channels + 2 * b.out_channels
        for o in b.options:
            total += REGISTRY[o.op.kind].count_super_params(
                o.op, widths=b.widths, heads=o.heads, in_hw=b.in_hw, sharing=sharing
            )
    return total


def _basic_super_params(b: ResolvedBlock, sharing: str) -> int:
    """A basic block of the supernet: per operator, both layers at their largest and a BN after
    each (over the outputs it addresses); the shared shortcut."""
    total = _projection(b).params
    out = (b.out_channels,)
    for o in b.options:
        spec = REGISTRY[o.op.kind]
        total += spec.count_super_params(
            o.op, widths=b.widths, heads=o.heads, in_hw=b.in_hw, sharing=sharing, in_max=b.in_channels
        )
        total += spec.count_super_params(
            o.op, widths=out, heads=o.heads, in_hw=b.out_hw, sharing=sharing, in_max=b.max_width
        )
        total += 2 * spec.count_output_rows(o.op, widths=b.widths, heads=o.heads, sharing=sharing)
        total += 2 * spec.count_output_rows(o.op, widths=out, heads=o.heads, sharing=sharing)
    return total


def space_cost_range(space: ResolvedSpace) -> dict[str, int]:
    """What ``trionet compile`` prints: min/max params and FLOPs, and the supernet's size."""
    return CostModel(space).extremes() | {"supernet_params": supernet_params(space)}

"""Parameter and multiply-add formulas of the built-in operators: plain, torch-free functions.

The operator registry (:mod:`trionet_dsl.lang.operators`) names these per operator; the
cost model calls them through it. The derivations are in each operator module's docstring
(:mod:`trionet_dsl.nn.ops.sliced`, ``local_attention``, ``axial_attention``), whose
``param_count``/``macs`` static methods call the formula functions below, and the tests
check them against module parameter counts, loops and fvcore.

Each operator has three registry functions (``<kind>_params``, ``<kind>_macs``,
``<kind>_super_params``, signatures in the registry's docstring); they call the general
formulas (``conv2d_*``, ``local_attention_*``, ``axial_attention_*``) with input channels = width, as in a
bottleneck, unless ``in_channels`` (``in_max`` for the supernet) says otherwise, as a ``basic`` block's
layers do (``in -> width``, ``width -> out``).

A grouped conv (``groups=G``) has ``w * (C_in / G) * K^2`` parameters and
``ceil(H/s) ceil(W/s) w (C_in / G) K^2`` multiply-adds: each output channel sees ``C_in / G`` inputs.
"""

from __future__ import annotations

from trionet_dsl.lang.ir import Op
from trionet_dsl.lang.operators import head_count
from trionet_dsl.space.sharing import grid_dims, split_halves, stored_rows


# ---------------------------------------------------------------------------- formulas
def conv2d_param_count(in_channels: int, width: int, kernel: int, groups: int = 1) -> int:
    """Parameters of a bias-free KxK conv of ``groups`` groups: ``w (C_in / G) K^2``."""
    return width * (in_channels // groups) * kernel * kernel


def conv2d_macs(
    height: int,
    width_px: int,
    in_channels: int,
    width: int,
    kernel: int,
    stride: int = 1,
    batch: int = 1,
    groups: int = 1,
) -> int:
    """``N ceil(H/s) ceil(W/s) (C_in / G) w K^2`` (padding K//2, odd K)."""
    oh, ow = -(-height // stride), -(-width_px // stride)
    return batch * oh * ow * (in_channels // groups) * width * kernel * kernel


def local_attention_params(in_channels: int, width: int, heads: int, span: int) -> int:
    """``3 C_in w + w K``: the q/k/v projections and ``K`` offsets x ``d`` channels per head."""
    return 3 * width * in_channels + width * span


def local_attention_macs(
    height: int, width_px: int, in_channels: int, width: int, heads: int, span: int, batch: int = 1
) -> int:
    """``N H W (3 C_in w + 2 K^2 w + K w)`` (see :mod:`trionet_dsl.nn.ops.local_attention`)."""
    hw = height * width_px
    return batch * hw * (3 * in_channels * width + 2 * span * span * width + span * width)


def axial_attention_params(
    in_channels: int,
    width: int,
    heads: int,
    max_len: int,
    qk_ratio: int = 1,
    shared_pos: bool = False,
    bn: bool = False,
) -> int:
    """Per layer ``(2w/R + w) c`` projections (``c`` = C_in, then w), embeddings ``E (2 max_len - 1)``
    (``E = 2w/R + w`` per head, ``2d/R + d`` shared) and with BN ``2 (2w/R + w) + 6h + 4w``.
    Defaults: ``3 C_in w + 3 w^2 + 6 w (2 max_len - 1)``."""
    rows = 2 * (width // qk_ratio) + width
    d = width // heads
    emb = (2 * (d // qk_ratio) + d if shared_pos else rows) * (2 * max_len - 1)
    norms = 2 * rows + 6 * heads + 4 * width if bn else 0
    return rows * in_channels + rows * width + 2 * (emb + norms)


def axial_attention_macs(
    height: int, width_px: int, in_channels: int, width: int, heads: int, batch: int = 1, qk_ratio: int = 1
) -> int:
    """``N H W ((2/R + 1) C_in w + (3/R + 2) H w) + N H W ((2/R + 1) w^2 + (3/R + 2) W w)``; R = 1:
    ``N H W (3 C_in w + 5 H w) + N H W (3 w^2 + 5 W w)`` (see :mod:`trionet_dsl.nn.ops.axial_attention`)."""
    hw, wqk = height * width_px, width // qk_ratio
    rows = 2 * wqk + width
    return (
        batch
        * hw
        * (rows * in_channels + (3 * wqk + 2 * width) * height + rows * width + (3 * wqk + 2 * width) * width_px)
    )


def global_attention_params(in_channels: int, width: int, heads: int, max_hw: tuple[int, int]) -> int:
    """``3 C_in w + w (2 max_h - 1 + 2 max_w - 1)``: q/k/v and per-head row/column embeddings."""
    return 3 * width * in_channels + width * (2 * max_hw[0] - 1 + 2 * max_hw[1] - 1)


def global_attention_macs(height: int, width_px: int, in_channels: int, width: int, heads: int, batch: int = 1) -> int:
    """``N H W (3 C_in w + 2 H W w + (H + W) w)`` (see :mod:`trionet_dsl.nn.ops.global_attention`)."""
    hw = height * width_px
    return batch * hw * (3 * in_channels * width + 2 * hw * width + (height + width_px) * width)


GLOBAL_MAX_MIB = 64
"""Default cap on a ``global`` operator's logits per image (MiB, float32): ``heads (HW)^2 4`` bytes."""


def global_logit_mib(heads: int, in_hw: tuple[int, int]) -> float:
    """MiB of float32 logits one image needs in a ``global`` operator of ``heads`` heads."""
    return heads * (in_hw[0] * in_hw[1]) ** 2 * 4 / 2**20


# ---------------------------------------------------------------------------- registry entries
def groups_of(op: Op) -> int:
    """A conv's groups (1 when not written)."""
    return op.arg("groups") or 1


def conv_check(op: Op, *, widths: tuple[int, ...], heads: tuple[int, ...]) -> tuple[str, str] | None:
    """Every channel count a grouped conv sees must be divisible by its groups."""
    g = groups_of(op)
    bad = [w for w in widths if w % g]
    if not bad:
        return None
    fits = sorted({w - w % g for w in bad if w >= g} | {w + g - w % g for w in bad})
    return (
        f"groups={g} does not divide {bad[0]} channels",
        f"use widths divisible by {g} (e.g. {', '.join(map(str, fits[:4]))}) or fewer groups",
    )


def conv_params(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], in_channels: int | None = None
) -> int:
    cin = width if in_channels is None else in_channels
    return conv2d_param_count(cin, width, op.require("kernel"), groups_of(op))


def conv_macs(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int, in_channels: int | None = None
) -> int:
    cin = width if in_channels is None else in_channels
    return conv2d_macs(in_hw[0], in_hw[1], cin, width, op.require("kernel"), stride, groups=groups_of(op))


def conv_super_params(
    op: Op,
    *,
    widths: tuple[int, ...],
    heads: tuple[int, ...],
    in_hw: tuple[int, int],
    sharing: str,
    in_max: int | None = None,
) -> int:
    cin = max(widths) if in_max is None else in_max
    return conv2d_param_count(cin, max(widths), op.require("kernel"), groups_of(op))


def local_params(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], in_channels: int | None = None
) -> int:
    cin = width if in_channels is None else in_channels
    return local_attention_params(cin, width, head_count(heads), op.require("span"))


def local_macs(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int, in_channels: int | None = None
) -> int:
    cin = width if in_channels is None else in_channels
    return local_attention_macs(in_hw[0], in_hw[1], cin, width, head_count(heads), op.require("span"))


def local_super_params(
    op: Op,
    *,
    widths: tuple[int, ...],
    heads: tuple[int, ...],
    in_hw: tuple[int, int],
    sharing: str,
    in_max: int | None = None,
) -> int:
    """q/k/v of ``stored_rows`` rows; embeddings per head (H x (ceil + floor of D/2) x K) or flat (W x K)."""
    wmax, rows = max(widths), stored_rows(widths, heads, sharing)
    cin = wmax if in_max is None else in_max
    if sharing == "multihead":
        big_h, big_d = grid_dims(widths, heads)
        return 3 * rows * cin + big_h * sum(split_halves(big_d)) * op.require("span")
    return 3 * rows * cin + wmax * op.require("span")


def axial_options(op: Op) -> tuple[int, bool, bool]:
    """(qk_ratio, shared_pos, bn) of an axial operator: its paper-faithful options, defaults off."""
    return op.arg("qk_ratio") or 1, bool(op.arg("shared_pos")), bool(op.arg("bn"))


def axial_params(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], in_channels: int | None = None
) -> int:
    cin = width if in_channels is None else in_channels
    return axial_attention_params(cin, width, head_count(heads), max(in_hw), *axial_options(op))


def axial_macs(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int, in_channels: int | None = None
) -> int:
    ratio = axial_options(op)[0]
    cin = width if in_channels is None else in_channels
    return axial_attention_macs(in_hw[0], in_hw[1], cin, width, head_count(heads), qk_ratio=ratio)


def axial_super_params(
    op: Op,
    *,
    widths: tuple[int, ...],
    heads: tuple[int, ...],
    in_hw: tuple[int, int],
    sharing: str,
    in_max: int | None = None,
) -> int:
    """Height layer (in: ``in_max``, default max width) and width layer (in: the stored rows), three
    embeddings each; q/k rows and embeddings ``1/R`` of v's; shared embeddings (1 x D x offsets); BN
    per stored row."""
    ratio, shared, bn = axial_options(op)
    wmax, rows, offsets = max(widths), stored_rows(widths, heads, sharing), 2 * max(in_hw) - 1
    cin = wmax if in_max is None else in_max
    all_rows = 2 * (rows // ratio) + rows
    big_h, big_d = grid_dims(widths, heads)
    emb = (2 * (big_d // ratio) + big_d) if shared else all_rows
    norms = 2 * all_rows + 6 * big_h + 4 * rows if bn else 0
    return all_rows * cin + all_rows * rows + 2 * (emb * offsets + norms)


def axial_check(op: Op, *, widths: tuple[int, ...], heads: tuple[int, ...]) -> tuple[str, str] | None:
    """``qk_ratio`` must divide every head dim; ``shared_pos``/``bn`` are flags (=1)."""
    for flag in ("shared_pos", "bn"):
        if op.arg(flag) not in (None, 1):
            return f"{flag} is a flag", f"write {flag}=1, or leave it out for the default"
    ratio = op.arg("qk_ratio") or 1
    bad = [(w, h) for w in widths for h in heads if w % h == 0 and (w // h) % ratio]
    if bad:
        w, h = bad[0]
        return (
            f"qk_ratio={ratio} does not divide the head dim {w // h} of width {w} with {h} heads",
            f"q/k get d/{ratio} channels per head: use widths and heads whose width/heads is a multiple of {ratio}",
        )
    return None


def global_params(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], in_channels: int | None = None
) -> int:
    return global_attention_params(width if in_channels is None else in_channels, width, head_count(heads), in_hw)


def global_macs(
    op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], stride: int, in_channels: int | None = None
) -> int:
    cin = width if in_channels is None else in_channels
    return global_attention_macs(in_hw[0], in_hw[1], cin, width, head_count(heads))


def global_super_params(
    op: Op,
    *,
    widths: tuple[int, ...],
    heads: tuple[int, ...],
    in_hw: tuple[int, int],
    sharing: str,
    in_max: int | None = None,
) -> int:
    """q/k/v of ``stored_rows`` rows over ``in_max`` inputs (default max width); embeddings per head
    (H x D x offsets) or flat (W x offsets)."""
    wmax, rows, offsets = max(widths), stored_rows(widths, heads, sharing), 2 * in_hw[0] - 1 + 2 * in_hw[1] - 1
    cin = wmax if in_max is None else in_max
    if sharing == "multihead":
        big_h, big_d = grid_dims(widths, heads)
        return 3 * rows * cin + big_h * big_d * offsets
    return 3 * rows * cin + wmax * offsets


def global_check(
    op: Op, *, widths: tuple[int, ...], heads: tuple[int, ...], in_hw: tuple[int, int] | None = None
) -> tuple[str, str] | None:
    """Refuse a ``global`` whose (HW)^2 logits per head exceed the cap (``max_mib``, default 64 MiB)."""
    if in_hw is None or not heads:
        return None
    cap = op.arg("max_mib") or GLOBAL_MAX_MIB
    need = global_logit_mib(max(heads), in_hw)
    if need <= cap:
        return None
    return (
        f"{max(heads)} heads over a {in_hw[0]}x{in_hw[1]} feature map need {need:,.0f} MiB of attention "
        f"logits per image (heads x (HW)^2 floats), over the cap of {cap} MiB",
        "put global attention in a later stage (BoTNet uses it at 14x14), use fewer heads, "
        f"or raise the cap: global(max_mib={int(need) + 1})",
    )

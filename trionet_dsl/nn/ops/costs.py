"""Parameter and multiply-add formulas of the spatial operators, by operator kind.

Kept beside the operators so a change to an operator and to its cost is one diff; the
formulas are derived in each operator module's docstring and checked against module
parameter counts in the tests.
"""

from __future__ import annotations

from trionet_dsl.nn.ops.axial_attention import AxialAttention2d
from trionet_dsl.nn.ops.heads import grid_dims, split_halves, stored_rows
from trionet_dsl.nn.ops.local_attention import LocalAttention2d
from trionet_dsl.nn.ops.sliced import conv2d_macs, conv2d_param_count


def op_params(kind: str, *, width: int, heads: int | None, kernel: int | None, span: int | None,
              max_len: int) -> int:
    """Parameters of the plain operator (input channels = width, as in a bottleneck)."""
    if kind == "conv":
        return conv2d_param_count(width, width, kernel)
    if kind == "local":
        return LocalAttention2d.param_count(width, width, heads, span)
    return AxialAttention2d.param_count(width, width, heads, max_len)


def op_macs(kind: str, *, height: int, width_px: int, channels: int, heads: int | None, kernel: int | None,
            span: int | None, stride: int) -> int:
    """Multiply-adds of the operator on one ``height x width_px`` input of ``channels`` channels."""
    if kind == "conv":
        return conv2d_macs(height, width_px, channels, channels, kernel, stride)
    if kind == "local":
        return LocalAttention2d.macs(height, width_px, channels, channels, heads, span)
    return AxialAttention2d.macs(height, width_px, channels, channels, heads)


def super_op_params(kind: str, *, widths: tuple[int, ...], heads: tuple[int, ...], kernel: int | None,
                    span: int | None, max_len: int, sharing: str = "multihead") -> int:
    """Parameters of the supernet's operator holding every (width, heads) of a block (in_max = max width)."""
    wmax = max(widths)
    if kind == "conv":
        return conv2d_param_count(wmax, wmax, kernel)
    rows = stored_rows(widths, heads, sharing)
    if kind == "local":
        if sharing == "multihead":
            big_h, big_d = grid_dims(widths, heads)
            return 3 * rows * wmax + big_h * sum(split_halves(big_d)) * span
        return 3 * rows * wmax + wmax * span
    offsets = 2 * max_len - 1
    return 3 * rows * wmax + 3 * rows * rows + 2 * 3 * rows * offsets

"""Spatial operators of a TrioNet bottleneck: convolution, SASA local self-attention and
Axial-DeepLab axial self-attention.

Each operator is one functional core (``local_attention``, ``axial_attention``,
``F.conv2d``) behind two modules: a *super* module holding the largest weights, whose
``forward(x, width, heads)`` slices them to the requested sub-operator (and whose
``extract(width, heads)`` returns a plain copy), and a *plain* module of exactly one size
(``LocalAttention2d``, ``AxialAttention2d``, ``nn.Conv2d``), scriptable and ONNX-exportable.
How width and heads share attention weights (Multi-head Sharing vs channel prefix) is
described in :mod:`trionet_dsl.nn.ops.heads`.
"""

from trionet_dsl.nn.ops.axial_attention import (
    AxialAttention2d, SuperAxialAttention, axial_attention, axial_layer, relative_index,
)
from trionet_dsl.nn.ops.costs import op_macs, op_params, super_op_params
from trionet_dsl.nn.ops.factory import SuperConvOp, plain_op, super_op
from trionet_dsl.nn.ops.heads import MODES, grid_dims, grid_index, output_index, slice_rows, split_halves, stored_rows
from trionet_dsl.nn.ops.local_attention import LocalAttention2d, SuperLocalAttention, local_attention
from trionet_dsl.nn.ops.sliced import SlicedBatchNorm2d, SuperConv2d, conv2d_macs, conv2d_param_count

__all__ = [
    "MODES", "AxialAttention2d", "LocalAttention2d", "SlicedBatchNorm2d", "SuperAxialAttention", "SuperConv2d",
    "SuperConvOp", "SuperLocalAttention", "axial_attention", "axial_layer", "conv2d_macs", "conv2d_param_count",
    "grid_dims", "grid_index", "local_attention", "output_index", "op_macs", "op_params", "plain_op", "relative_index", "slice_rows",
    "split_halves", "stored_rows", "super_op", "super_op_params",
]

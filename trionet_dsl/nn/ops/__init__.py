"""Spatial operators of a TrioNet bottleneck: convolution, SASA local self-attention and
Axial-DeepLab axial self-attention.

Each operator is one functional core (``local_attention``, ``axial_attention``,
``F.conv2d``) behind two modules: a *super* module holding the largest weights, whose
``forward(x, width, heads)`` slices them to the requested sub-operator (and whose
``extract(width, heads)`` returns a plain copy), and a *plain* module of exactly one size
(``LocalAttention2d``, ``AxialAttention2d``, ``nn.Conv2d``), scriptable and ONNX-exportable.
How width and heads share attention weights (Multi-head Sharing vs channel prefix) is
described in :mod:`trionet_dsl.nn.ops.heads`. The operator registry
(:mod:`trionet_dsl.lang.operators`) names each kind's modules (:mod:`trionet_dsl.nn.ops.factory`)
and its cost formulas (:mod:`trionet_dsl.space.op_costs`).
"""

from trionet_dsl.nn.ops.axial_attention import (
    AxialAttention2d,
    SuperAxialAttention,
    axial_attention,
    axial_layer,
    relative_index,
)
from trionet_dsl.nn.ops.factory import SuperConvOp
from trionet_dsl.nn.ops.heads import MODES, grid_dims, grid_index, output_index, slice_rows, split_halves, stored_rows
from trionet_dsl.nn.ops.local_attention import LocalAttention2d, SuperLocalAttention, local_attention
from trionet_dsl.nn.ops.sliced import SlicedBatchNorm2d, SuperConv2d, conv2d_macs, conv2d_param_count

__all__ = [
    "MODES",
    "AxialAttention2d",
    "LocalAttention2d",
    "SlicedBatchNorm2d",
    "SuperAxialAttention",
    "SuperConv2d",
    "SuperConvOp",
    "SuperLocalAttention",
    "axial_attention",
    "axial_layer",
    "conv2d_macs",
    "conv2d_param_count",
    "grid_dims",
    "grid_index",
    "local_attention",
    "output_index",
    "relative_index",
    "slice_rows",
    "split_halves",
    "stored_rows",
]

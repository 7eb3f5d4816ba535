"""Spatial operators (conv, SASA local attention, axial attention), each as a plain module
and as a weight-sharing super module, plus width-sliced conv/BN for the bottleneck."""

from trionet_dsl.ops.axial_attention import AxialAttention2d, SuperAxialAttention, axial_attention, axial_layer
from trionet_dsl.ops.factory import SuperConvOp, plain_op, super_op
from trionet_dsl.ops.local_attention import LocalAttention2d, SuperLocalAttention, local_attention
from trionet_dsl.ops.sliced import SlicedBatchNorm2d, SuperConv2d

__all__ = [
    "AxialAttention2d", "LocalAttention2d", "SlicedBatchNorm2d", "SuperAxialAttention", "SuperConv2d",
    "SuperConvOp", "SuperLocalAttention", "axial_attention", "axial_layer", "local_attention", "plain_op",
    "super_op",
]

"""Stage 3, the networks: operators (``ops``), the plain network of one arch (``network``),
the weight-sharing supernet and extraction of a sub-network (``supernet``)."""

from trionet_dsl.nn.network import TrioNet, WithPreprocessing, build
from trionet_dsl.nn.supernet import Supernet, extract

__all__ = ["Supernet", "TrioNet", "WithPreprocessing", "build", "extract"]

"""trionet-dsl: a language and compiler for conv / local / axial self-attention search spaces.

The package is the pipeline, one subpackage per stage, data flowing one way::

    lang/  -> space/ (torch-free) -> nn/    -> train/ -> search/ -> app/
    text      resolved space,        supernet,  loop,     strategies, CLI,
    -> IR     graph, costs,          extract    data,     driver      jobs,
              sampling, diff                    checkpts              export

This module is the front door: the names a Python user needs. Those that need torch are
imported on first use, so ``import trionet_dsl`` (and the language and space stages) stay
torch-free.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from trionet_dsl.lang.emit import emit
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.ir import Arch, ArchBlock, Op, Space
from trionet_dsl.lang.parser import parse
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.diff import diff_archs, diff_spaces
from trionet_dsl.space.loader import LoadedArch, compile_arch_text, compile_space_text, load, load_arch, load_space
from trionet_dsl.space.resolve import ResolvedSpace, check_arch, resolve
from trionet_dsl.space.sampling import sample

try:
    __version__ = version("trionet-dsl")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {  # name -> module; these import torch
    "Supernet": "trionet_dsl.nn.supernet",
    "extract": "trionet_dsl.nn.supernet",
    "build": "trionet_dsl.nn.network",
    "train": "trionet_dsl.train.loop",
    "TrainConfig": "trionet_dsl.train.config",
    "search": "trionet_dsl.app.searching",
    "export": "trionet_dsl.app.export",
}

if TYPE_CHECKING:
    from trionet_dsl.app.export import export_arch as export
    from trionet_dsl.app.searching import search
    from trionet_dsl.nn.network import build
    from trionet_dsl.nn.supernet import Supernet, extract
    from trionet_dsl.train.config import TrainConfig
    from trionet_dsl.train.loop import train


def diff(a: Any, b: Any) -> Any:
    """Per-block diff of two archs, or choices added/removed between two resolved spaces."""
    return diff_spaces(a, b) if isinstance(a, ResolvedSpace) else diff_archs(a, b)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod = import_module(_LAZY[name])
        return getattr(mod, {"search": "search", "export": "export_arch"}.get(name, name))
    raise AttributeError(f"module 'trionet_dsl' has no attribute {name!r}")


__all__ = [
    "Arch",
    "ArchBlock",
    "CostModel",
    "LoadedArch",
    "Op",
    "ResolvedSpace",
    "Space",
    "SpaceError",
    "Supernet",
    "TrainConfig",
    "build",
    "check_arch",
    "compile_arch_text",
    "compile_space_text",
    "diff",
    "emit",
    "export",
    "extract",
    "load",
    "load_arch",
    "load_space",
    "parse",
    "resolve",
    "sample",
    "search",
    "train",
]

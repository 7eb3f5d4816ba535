"""trionet-dsl: a language and compiler for conv / local / axial self-attention search spaces.

Pipeline (one module per stage): ``parser`` (grammar -> IR) -> ``semantics`` (checks,
resolution) -> ``graph`` (networkx) -> ``supernet`` -> ``search`` -> ``emit`` (IR -> text).
"""

from trionet_dsl.emit import emit
from trionet_dsl.errors import SpaceError
from trionet_dsl.ir import Arch, ArchBlock, Op, Space
from trionet_dsl.loader import LoadedArch, compile_arch_text, compile_space_text, load, load_arch, load_space
from trionet_dsl.parser import parse
from trionet_dsl.semantics import ResolvedSpace, check_arch, resolve

__all__ = [
    "Arch", "ArchBlock", "LoadedArch", "Op", "ResolvedSpace", "Space", "SpaceError", "check_arch",
    "compile_arch_text", "compile_space_text", "emit", "load", "load_arch", "load_space", "parse", "resolve",
]
__version__ = "0.1.0"

"""Stage 2, the space (torch-free): resolution of defaults and shapes (``resolve``), loading
files (``loader``), sampling, the layer graph, the analytic cost model and diffs."""

from trionet_dsl.space.loader import (
    LoadedArch,
    compile_arch_text,
    compile_space_text,
    load,
    load_any,
    load_arch,
    load_space,
)
from trionet_dsl.space.resolve import Choice, ResolvedBlock, ResolvedSpace, check_arch, resolve
from trionet_dsl.space.sampling import sample

__all__ = [
    "Choice",
    "LoadedArch",
    "ResolvedBlock",
    "ResolvedSpace",
    "check_arch",
    "compile_arch_text",
    "compile_space_text",
    "load",
    "load_any",
    "load_arch",
    "load_space",
    "resolve",
    "sample",
]

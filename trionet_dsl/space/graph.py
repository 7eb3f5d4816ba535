"""Resolved space -> ``networkx.DiGraph`` of layers: inspectable, countable, drawable.

Each bottleneck becomes ``reduce`` (1x1) -> ``op`` (the choice node; for an arch, the one
operator it fixes) -> ``expand`` (1x1) -> ``add``, with the shortcut as a ``residual`` edge
(or through a ``proj`` node when the shape changes). A basic block becomes ``op`` (its first spatial
layer, ``in -> width``, with the stride: the choice node) -> ``op2`` (the same operator, ``width ->
out``) -> ``add``. Node attributes are plain JSON values (shapes as
[C, H, W], choices as strings) so node-link JSON and Graphviz dot both work without conversion.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.ir import Arch
from trionet_dsl.space.resolve import Choice, ResolvedSpace, arch_choices, check_arch


def choice_label(c: Choice) -> str:
    """``local(span=7) w48 h8``: one choice in one short string."""
    return f"{c.op.signature} w{c.width}" + (f" h{c.heads}" if c.heads is not None else "")


def build_graph(rs: ResolvedSpace, arch: Arch | None = None) -> nx.DiGraph:
    """The layer graph of a space, or of one arch of it (a DAG; topological order is execution order).

    For a space each block's ``op`` node is a ``choice`` node listing every operator, width
    and head count; for an arch it is an ``op`` node holding the one the arch fixes, and the
    1x1 layers around it have that width.
    """
    fixed = arch_choices(rs, check_arch(rs, arch)) if arch is not None else None
    g = nx.DiGraph(name=rs.name if arch is None else arch.name)
    if fixed is None:  # elastic depth: each stage's depth choices; blocks past the smallest are ``optional``
        g.graph["depths"] = {name: list(d) for name, d in rs.depth_choices.items()}
    inp = rs.space.input
    shape = [inp.channels, inp.height, inp.width]
    g.add_node("input", kind="input", label=f"input {inp.channels}x{inp.height}x{inp.width}", out_shape=shape)
    prev = "input"
    for step in rs.stem:
        nid, layer = f"stem.{step.index}", step.layer
        g.add_node(
            nid,
            kind=f"stem_{layer.kind}",
            label=(
                f"{layer.op.signature} w{layer.channels} h{layer.heads}/{layer.stride}"
                if layer.kind == "attention"
                else f"{layer.kind} {layer.kernel}x{layer.kernel}/{layer.stride}"
            ),
            in_shape=list(step.in_shape),
            out_shape=list(step.out_shape),
            padding=step.padding,
        )
        g.add_edge(prev, nid, kind="data")
        prev = nid
    for i, b in enumerate(rs.blocks):
        if fixed is not None and fixed[i] is None:
            continue  # past its stage's depth in this arch: not in its graph
        k = b.key
        in_shape = [b.in_channels, *b.in_hw]
        out_shape = [b.out_channels, *b.out_hw]
        common: dict = {"stage": b.stage, "block": k, "index": b.index}
        if fixed is None:
            common["optional"] = b.optional
        basic = b.kind == "basic"
        if fixed is None:
            mid = [max(b.widths), *b.out_hw]
            op_in = in_shape if basic else [max(b.widths), *b.in_hw]
            if not basic:
                g.add_node(
                    f"{k}.reduce",
                    kind="conv1x1",
                    label=f"{k} 1x1 -> {'|'.join(map(str, b.widths))}",
                    in_shape=in_shape,
                    out_shape=op_in,
                    widths=list(b.widths),
                    **common,
                )
            g.add_node(
                f"{k}.op",
                kind="choice",
                label=f"{k} " + " | ".join(o.op.signature for o in b.options),
                in_shape=op_in,
                out_shape=mid,
                stride=b.stride,
                ops=[o.op.signature for o in b.options],
                heads={o.op.signature: list(o.heads) for o in b.options if o.heads},
                widths=list(b.widths),
                choices=[choice_label(c) for c in b.choices],
                num_choices=b.num_choices,
                **common,
            )
            second = "the block's operator"
        else:
            c = fixed[i]
            assert c is not None
            mid = [c.width, *b.out_hw]
            op_in = in_shape if basic else [c.width, *b.in_hw]
            if not basic:
                g.add_node(
                    f"{k}.reduce",
                    kind="conv1x1",
                    label=f"{k} 1x1 -> {c.width}",
                    in_shape=in_shape,
                    out_shape=op_in,
                    widths=[c.width],
                    **common,
                )
            g.add_node(
                f"{k}.op",
                kind="op",
                label=f"{k} {choice_label(c)}",
                in_shape=op_in,
                out_shape=mid,
                stride=b.stride,
                op=c.op.signature,
                width=c.width,
                heads=c.heads,
                **common,
            )
            second = c.op.signature + (f" h{c.heads}" if c.heads is not None else "")
        if basic:
            g.add_node(
                f"{k}.op2",
                kind="spatial",
                label=f"{k} {second} -> {b.out_channels}",
                in_shape=mid,
                out_shape=out_shape,
                **common,
            )
            g.add_edge(prev, f"{k}.op", kind="data")
            g.add_edge(f"{k}.op", f"{k}.op2", kind="data")
            g.add_edge(f"{k}.op2", f"{k}.add", kind="data")
        else:
            g.add_node(
                f"{k}.expand",
                kind="conv1x1",
                label=f"{k} 1x1 -> {b.out_channels}",
                in_shape=mid,
                out_shape=out_shape,
                **common,
            )
            g.add_edge(prev, f"{k}.reduce", kind="data")
            g.add_edge(f"{k}.reduce", f"{k}.op", kind="data")
            g.add_edge(f"{k}.op", f"{k}.expand", kind="data")
            g.add_edge(f"{k}.expand", f"{k}.add", kind="data")
        g.add_node(f"{k}.add", kind="add", label=f"{k} +", out_shape=out_shape, **common)
        if b.has_projection:
            g.add_node(
                f"{k}.proj",
                kind="projection",
                label=f"{k} 1x1/{b.stride} -> {b.out_channels}",
                in_shape=in_shape,
                out_shape=out_shape,
                **common,
            )
            g.add_edge(prev, f"{k}.proj", kind="downsample")
            g.add_edge(f"{k}.proj", f"{k}.add", kind="downsample")
        else:
            g.add_edge(prev, f"{k}.add", kind="residual")
        prev = f"{k}.add"
    g.add_node("pool", kind="global_avgpool", label="global avg pool", out_shape=[rs.final_channels, 1, 1])
    g.add_node("fc", kind="linear", label=f"fc -> {rs.space.classes}", out_shape=[rs.space.classes])
    g.add_edge(prev, "pool", kind="data")
    g.add_edge("pool", "fc", kind="data")
    return g


def space_size(g: nx.DiGraph) -> int:
    """Exact number of architectures (1 for an arch's graph): per stage, the sum over its depth
    choices ``d`` of the product of the choice counts of its first ``d`` blocks; the product of those.
    Without elastic depth that is the product of the choice nodes' counts."""
    counts: dict[str, dict[int, int]] = {}
    for _, d in g.nodes(data=True):
        if d["kind"] == "choice":
            counts.setdefault(d["stage"], {})[d["index"]] = d["num_choices"]
    depths = g.graph.get("depths", {})
    total = 1
    for stage, by_index in counts.items():
        per_block = [by_index[i] for i in sorted(by_index)]
        total *= sum(math.prod(per_block[:k]) for k in depths.get(stage, [len(per_block)]))
    return total


@dataclass(frozen=True)
class StageSummary:
    name: str
    blocks: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    choices_per_block: tuple[int, ...]
    depths: tuple[int, ...] = ()
    """Depth choices (elastic depth); empty: the stage always has ``blocks`` blocks."""

    @property
    def size(self) -> int:
        return sum(math.prod(self.choices_per_block[:d]) for d in self.depths or (self.blocks,))


def stage_summaries(g: nx.DiGraph) -> list[StageSummary]:
    """Per-stage shapes and choice counts, in execution order."""
    out: dict[str, list[dict]] = {}
    for n in nx.topological_sort(g):
        d = g.nodes[n]
        if d["kind"] in ("choice", "op"):
            out.setdefault(d["stage"], []).append(d | {"id": n})
    res = []
    for name, nodes in out.items():
        first, last = nodes[0]["block"], nodes[-1]["block"]
        res.append(
            StageSummary(
                name,
                len(nodes),
                tuple(g.nodes[f"{first}.reduce" if f"{first}.reduce" in g else f"{first}.op"]["in_shape"]),
                tuple(g.nodes[f"{last}.add"]["out_shape"]),
                tuple(d.get("num_choices", 1) for d in nodes),
                tuple(g.graph.get("depths", {}).get(name, ()))
                if len(g.graph.get("depths", {}).get(name, ())) > 1
                else (),
            )
        )
    return res


def to_json(g: nx.DiGraph) -> dict:
    """Node-link JSON (networkx's own format)."""
    return nx.node_link_data(g, edges="edges")


def to_dot(g: nx.DiGraph) -> str:
    """Graphviz dot text via pydot (residual edges dashed, choice and operator nodes highlighted)."""
    h = nx.DiGraph(name=g.graph.get("name", "space"))
    for n, d in g.nodes(data=True):
        attrs = {"label": d.get("label", n), "shape": "box"}
        if d["kind"] == "choice":
            attrs.update(
                style="filled",
                fillcolor="lightyellow",
                shape="box3d",
                label=f"{d['label']}\\n{d['num_choices']} choices",
            )
        elif d["kind"] == "op":
            attrs.update(style="filled", fillcolor="lightblue")
        h.add_node(n, **{k: f'"{v}"' for k, v in attrs.items()})
    for u, v, d in g.edges(data=True):
        style = {"residual": "dashed", "downsample": "dotted"}.get(d["kind"], "solid")
        h.add_edge(u, v, style=style)
    return nx.nx_pydot.to_pydot(h).to_string()


def write_graph(g: nx.DiGraph, path: str | Path) -> Path:
    """Write ``.dot``, ``.json``, or render ``.svg``/``.png``/``.pdf`` with Graphviz's ``dot``."""
    import json

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        p.write_text(json.dumps(to_json(g), indent=1))
        return p
    dot = to_dot(g)
    if suffix in ("", ".dot", ".gv"):
        p.write_text(dot)
        return p
    if suffix not in (".svg", ".png", ".pdf"):
        raise SpaceError(f"unknown graph format '{suffix}'", hint="use .dot, .json, .svg, .png or .pdf")
    exe = shutil.which("dot")
    if exe is None:
        raise SpaceError(
            f"rendering {suffix} needs Graphviz's 'dot' program, which is not installed",
            hint="install graphviz (e.g. apt-get install graphviz) or write .dot instead",
        )
    proc = subprocess.run([exe, f"-T{suffix[1:]}", "-o", str(p)], input=dot.encode(), capture_output=True)
    if proc.returncode != 0:
        raise SpaceError(f"graphviz failed: {proc.stderr.decode(errors='replace').strip()}")
    return p

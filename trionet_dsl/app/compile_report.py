"""The data behind ``trionet compile``: a plain dict (printed as tables or as JSON)."""

from __future__ import annotations

from trionet_dsl.space.counts import count_value, sci
from trionet_dsl.space.graph import build_graph, space_size, stage_summaries
from trionet_dsl.space.loader import LoadedArch
from trionet_dsl.space.resolve import ResolvedSpace


def _shape(s) -> str:
    return "x".join(map(str, s))


def report(doc: ResolvedSpace | LoadedArch, with_costs: bool = True) -> dict:
    """Summary of a compiled space or arch; costs from the analytic model when asked."""
    if isinstance(doc, LoadedArch):
        rep: dict = {
            "kind": "arch",
            "name": doc.arch.name,
            "space": doc.space.name,
            "blocks": [
                {"key": b.key, "op": b.op.signature, "width": b.width, "heads": b.heads} for b in doc.arch.blocks
            ],
        }
        if doc.arch.depths:
            rep["depths"] = dict(doc.arch.depths)
        if with_costs:
            from trionet_dsl.space.cost import arch_cost

            c = arch_cost(doc.space, doc.arch)
            rep["costs"] = {"params": c.params, "flops": c.flops}
        return rep
    rs = doc
    g = build_graph(rs)
    size = space_size(g)
    inp = rs.space.input
    rep = {
        "kind": "space",
        "name": rs.name,
        "input": f"{inp.channels}x{inp.height}x{inp.width}",
        "classes": rs.space.classes,
        "size": count_value(size),
        "size_sci": sci(size),
        "stages": [
            {
                "name": s.name,
                "blocks": s.blocks,
                "depths": list(s.depths),
                "in": _shape(s.in_shape),
                "out": _shape(s.out_shape),
                "choices_per_block": list(s.choices_per_block),
                "size": count_value(s.size),
            }
            for s in stage_summaries(g)
        ],
        "blocks": [
            {
                "key": b.key,
                "in": _shape((b.in_channels, *b.in_hw)),
                "out": _shape((b.out_channels, *b.out_hw)),
                "stride": b.stride,
                "ops": [o.op.signature for o in b.options],
                "widths": list(b.widths),
                "heads": {o.op.signature: list(o.heads) for o in b.options if o.heads},
                "choices": b.num_choices,
                "optional": b.optional,
            }
            for b in rs.blocks
        ],
        "graph": {"nodes": g.number_of_nodes(), "edges": g.number_of_edges()},
    }
    if with_costs:
        try:
            from trionet_dsl.space.cost import space_cost_range
        except ImportError:  # cost model not available in this build
            return rep
        rep["costs"] = space_cost_range(rs)
    return rep

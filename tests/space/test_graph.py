"""The layer graph: structure, counts, exports."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.space.graph import build_graph, space_size, stage_summaries, to_dot, to_json, write_graph

SPACES = Path(__file__).resolve().parents[2] / "spaces"


def test_r50_graph_structure(r50_space):
    g = build_graph(r50_space)
    assert nx.is_directed_acyclic_graph(g)
    choice = [n for n, d in g.nodes(data=True) if d["kind"] == "choice"]
    assert len(choice) == 16
    # 4 projection shortcuts (first block of each stage), 12 identity residual edges
    assert sum(1 for _, d in g.nodes(data=True) if d["kind"] == "projection") == 4
    assert sum(1 for *_, d in g.edges(data=True) if d["kind"] == "residual") == 12
    # per block: conv 3 widths + local 3x2 + axial 3x2 = 15
    assert space_size(g) == 15**16 == r50_space.size
    order = list(nx.topological_sort(g))
    assert order[0] == "input" and order[-1] == "fc"
    assert order.index("s1.0.op") < order.index("s2.0.op") < order.index("s4.2.op")


def test_shapes_follow_resnet(r50_space):
    g = build_graph(r50_space)
    assert g.nodes["stem.1"]["out_shape"] == [64, 56, 56]
    assert g.nodes["s2.0.add"]["out_shape"] == [512, 28, 28]
    assert g.nodes["s4.2.add"]["out_shape"] == [2048, 7, 7]
    assert g.nodes["s1.0.op"]["widths"] == [32, 48, 64]
    assert g.nodes["s3.1.op"]["heads"] == {"local(span=7)": [4, 8], "axial": [4, 8]}
    stages = stage_summaries(g)
    assert [s.name for s in stages] == ["s1", "s2", "s3", "s4"]
    assert [s.blocks for s in stages] == [3, 4, 6, 3]
    assert stages[2].size == 15**6


def test_json_and_dot_exports(small_space, tmp_path):
    g = build_graph(small_space)
    data = json.loads(json.dumps(to_json(g)))
    h = nx.node_link_graph(data, edges="edges")
    assert set(h.nodes) == set(g.nodes) and h.number_of_edges() == g.number_of_edges()
    dot = to_dot(g)
    assert '"s1.0.op"' in dot and "style=dashed" in dot
    assert write_graph(g, tmp_path / "g.dot").read_text() == dot
    assert json.loads((write_graph(g, tmp_path / "g.json")).read_text())["nodes"]


def test_render_without_graphviz_is_a_clear_error(small_space, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SpaceError, match="Graphviz"):
        write_graph(build_graph(small_space), tmp_path / "g.png")


def test_stem_nodes_carry_the_resolvers_geometry():
    from trionet_dsl.space.loader import compile_space_text

    rs = compile_space_text("""space e {
  input 3x35x35
  classes 5
  stem { conv 4x4 8 stride 2; maxpool 2x2 stride 2; avgpool 3x3 stride 2 }
  block bottleneck { op conv }
  stage s1 blocks 1 width 8
}""")
    g = build_graph(rs)
    stem = [g.nodes[f"stem.{i}"] for i in range(3)]
    assert [d["padding"] for d in stem] == [1, 0, 1]
    assert [d["out_shape"] for d in stem] == [[8, 17, 17], [8, 8, 8], [8, 4, 4]]
    assert [d["in_shape"] for d in stem] == [[3, 35, 35], [8, 17, 17], [8, 8, 8]]
    assert g.nodes["s1.0.reduce"]["in_shape"] == [rs.stem_channels, *rs.stem_hw] == [8, 4, 4]


def test_an_arch_graph_has_one_operator_per_block():
    from trionet_dsl import load_arch

    la = load_arch(SPACES / "archs" / "sasa_r50.arch")
    g = build_graph(la.space, la.arch)
    assert g.graph["name"] == la.arch.name
    assert nx.is_directed_acyclic_graph(g)
    assert not [n for n, d in g.nodes(data=True) if d["kind"] == "choice"]
    ops = {n: d for n, d in g.nodes(data=True) if d["kind"] == "op"}
    assert len(ops) == len(la.arch.blocks) == 16
    for b in la.arch.blocks:
        d = ops[f"{b.key}.op"]
        assert (d["op"], d["width"], d["heads"]) == (b.op.signature, b.width, b.heads)
        assert d["label"] == f"{b.key} {b.op.signature} w{b.width} h{b.heads}"
        assert g.nodes[f"{b.key}.reduce"]["out_shape"][0] == b.width == g.nodes[f"{b.key}.expand"]["in_shape"][0]
    assert space_size(g) == 1 and [s.size for s in stage_summaries(g)] == [1, 1, 1, 1]
    # the same layers as the space's graph, with the choices fixed
    assert set(g.nodes) == set(build_graph(la.space).nodes)
    dot = to_dot(g)
    assert "choices" not in dot and "local(span=7) w64 h8" in dot

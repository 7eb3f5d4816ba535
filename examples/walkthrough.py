"""A guided tour of the pipeline from Python, one stage per step (about a minute on 2 CPU cores).

    python examples/walkthrough.py [--seed 0] [--archs 100]

grammar -> IR -> graph -> supernet -> sampling / cost -> extraction -> emitted DSL -> diff.
Every step prints what it produced, so you can read this file top to bottom next to its output.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from trionet_dsl import SpaceError, compile_space_text, load
from trionet_dsl.lang.emit import emit_arch
from trionet_dsl.nn.supernet import Supernet, extract
from trionet_dsl.space.cost import CostModel, supernet_params
from trionet_dsl.space.diff import diff_archs
from trionet_dsl.space.graph import build_graph, choice_label, space_size, stage_summaries
from trionet_dsl.space.loader import compile_arch_text
from trionet_dsl.space.sampling import sample, uniform_op

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--archs", type=int, default=100, help="sub-networks to sample, run and extract")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    # 1. Text -> typed IR. `load` parses with grammars/space.lark, builds the pydantic IR and
    #    resolves defaults (space `block` -> stage body -> `block I` override) into one
    #    ResolvedBlock per block, each with its full list of (operator, width, heads) choices.
    space = load(ROOT / "spaces" / "trionet_small.space")
    first = space.blocks[0]
    print(
        f"[1] {space.name}: {len(space.blocks)} searchable blocks; block {first.key} has "
        f"{first.num_choices} (operator, width, heads) choices, e.g. {choice_label(first.choices[0])} "
        f"... {choice_label(first.choices[-1])}"
    )

    #    Bad input is a SpaceError with file:line:col, a caret and a hint — never a traceback.
    try:
        compile_space_text(
            "space s {\n  input 3x32x32\n  classes 10\n  block bottleneck { op locl }\n"
            "  stage a blocks 1 width 16\n}\n",
            "typo.space",
        )
    except SpaceError as err:
        print("[1] a misspelt operator reads:\n" + str(err))

    # 2. IR -> networkx graph: one node per layer, choice sets and shapes as attributes.
    #    The size of the space is an exact Python int (15 choices per block here).
    g = build_graph(space)
    print(f"[2] graph: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges, space size {space_size(g):,} = 15**6")
    for s in stage_summaries(g):
        print(f"      stage {s.name}: {s.blocks} blocks, {s.size:,} sub-stages")

    # 3. Graph -> weight-sharing supernet. Each block holds one super-operator per operator
    #    choice (conv weights are not attention weights); widths slice the leading channels;
    #    attention heads are shared by Multi-head Sharing (see trionet_dsl/ops/heads.py).
    net = Supernet(space, seed=args.seed)
    print(
        f"[3] supernet: {sum(p.numel() for p in net.parameters()):,} parameters (analytic: {supernet_params(space):,})"
    )

    # 4. Hierarchical Sampling (operator first, then its width/heads), the exact cost model,
    #    and extraction: every sampled sub-network trains (forward + backward), then is copied
    #    out as a plain nn.Module whose eval-mode outputs equal the supernet's.
    cost = CostModel(space)
    # Blocks start as their shortcut (the last BN of each is zero-initialised, which is what makes
    # supernet training work); give every BN random affine parameters, as training would, so the
    # comparison below exercises every operator. Train-mode forwards also fill the running stats.
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
    shape = space.space.input
    x = torch.randn(4, shape.channels, shape.height, shape.width)
    worst = 0.0
    for _ in range(args.archs):
        arch = sample(space, rng, "hierarchical")
        net.train().activate(arch)
        net(x).sum().backward()
        net.zero_grad(set_to_none=True)
        sub = extract(net.eval(), arch).eval()
        params, flops = cost(arch)
        assert params == sum(p.numel() for p in sub.parameters()), "cost model disagrees with the module"
        with torch.no_grad():
            worst = max(worst, (net(x) - sub(x)).abs().max().item())
    print(
        f"[4] {args.archs} sampled archs: forward/backward ran, params exact, "
        f"largest |supernet - extracted| = {worst:.2e} (outputs have std {net(x).std().item():.2f})"
    )

    # 5. A sub-network back to DSL text: the emitted `.arch` file parses back to the same IR.
    arch = sample(space, rng)
    text = emit_arch(arch, header=[f"params {cost(arch)[0]:,}, MACs {cost(arch)[1]:,}"])
    again = compile_arch_text(text, "emitted.arch", space).arch
    assert (again.name, again.blocks) == (arch.name, arch.blocks)  # the parsed IR also keeps the header comment
    print("[5] emitted arch (parses back to the same blocks):\n" + text)

    # 6. Diff it against the all-conv arch of the same space: which blocks changed.
    d = diff_archs(uniform_op(space, "conv", name="all_conv"), arch)
    print(f"[6] vs all-conv: {len(d.changed)} blocks changed, {len(d.equal)} equal")
    for ch in d.changed:
        print(f"      {ch.block}: {ch.a} -> {ch.b}")


if __name__ == "__main__":
    main()

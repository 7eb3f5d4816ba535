"""IR -> canonical DSL text (the inverse of the parser: ``parse(emit(x)) == x``).

One statement per line, two-space indents, every default that matters written out
(``conv(kernel=3)``, ``stride 1``) so two files that mean the same thing read the same.
Comments come back where they were: a comment that ended a statement's line ends that
statement's canonical line (consecutive ones aligned), and one on its own line comes back
on its own line before the statement (or closing brace) it preceded.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from trionet_dsl.lang.ir import (
    Arch,
    BlockSpec,
    ChannelRange,
    Channels,
    Multiplier,
    Op,
    Space,
    StemAttention,
    StemConv,
)

INDENT = "  "


def fmt_float(x: float) -> str:
    """Shortest decimal that reads back as the same float, never in exponent form."""
    r = repr(float(x))
    if "e" in r or "E" in r:
        # positional form of the shortest repr (f"{x:.17f}" would drop digits of tiny values)
        r = format(Decimal(r), "f")
        if "." not in r:
            r += ".0"
    return r


def fmt_ints(values: Iterable[int], sep: str = " | ") -> str:
    return sep.join(str(v) for v in values)


def fmt_op(op: Op) -> str:
    """``conv(kernel=3)``, ``local(span=7, heads=4|8)``, ``axial``, ``axial(span=15)``.

    The operator's arguments in the order its registry entry declares them (defaults
    written out: the IR holds them), then ``heads``; KeyError for an unregistered kind.
    """
    values = dict(op.args)
    args = [f"{k}={values[k]}" for k in op.operator.arg_names if k in values]
    if op.heads:
        args.append(f"heads={fmt_ints(op.heads, '|')}")
    return f"{op.kind}({', '.join(args)})" if args else op.kind


def fmt_width(item: Channels | ChannelRange | Multiplier) -> str:
    if isinstance(item, Channels):
        return str(item.value)
    if isinstance(item, Multiplier):
        return f"{fmt_float(item.factor)}x"
    step = f" step {item.step}" if item.step != 1 else ""
    return f"{item.start}..{item.stop}{step}"


class _Writer:
    """Collects (code, trailing comment) rows; ``text()`` aligns the trailing comments."""

    def __init__(self, comments: dict[str, tuple[str, ...]], trailing: dict[str, str]) -> None:
        self.comments = comments
        self.trailing = trailing
        self.rows: list[tuple[str, str | None]] = []

    def leading(self, depth: int, anchor: str) -> None:
        for c in self.comments.get(anchor, ()):
            self.rows.append((f"{INDENT * depth}#{c}", None))

    def line(self, depth: int, text: str, anchor: str | None = None) -> None:
        if anchor is not None:
            self.leading(depth, anchor)
        self.rows.append((f"{INDENT * depth}{text}", None if anchor is None else self.trailing.get(anchor)))

    def close(self, depth: int, anchor: str) -> None:
        self.leading(depth + 1, anchor)
        self.rows.append((f"{INDENT * depth}}}", self.trailing.get(anchor)))

    def text(self) -> str:
        """The lines; end-of-line comments of consecutive lines start in one column."""
        out: list[str] = []
        i = 0
        while i < len(self.rows):
            j = i
            while j < len(self.rows) and self.rows[j][1] is not None:
                j += 1
            if j == i:
                out.append(self.rows[i][0])
                i += 1
                continue
            col = max(len(code) for code, _ in self.rows[i:j]) + 2
            out += [f"{code.ljust(col)}#{c}" for code, c in self.rows[i:j]]
            i = j
        # comments after the last closing brace
        out += [f"#{c}" for c in self.comments.get("eof", ())]
        return "\n".join(out) + "\n"

    def spec(self, depth: int, spec: BlockSpec, path: str) -> None:
        if spec.ops is not None:
            self.line(depth, "op " + " | ".join(fmt_op(o) for o in spec.ops), f"{path}.op")
        if spec.width is not None:
            self.line(depth, "width " + " | ".join(fmt_width(w) for w in spec.width), f"{path}.width")
        if spec.heads is not None:
            self.line(depth, "heads " + fmt_ints(spec.heads), f"{path}.heads")

    def has_comments_under(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in (*self.comments, *self.trailing))


def emit_space(space: Space) -> str:
    w = _Writer(space.comments, space.trailing)
    w.line(0, f"space {space.name} {{", "space")
    i = space.input
    w.line(1, f"input {i.channels}x{i.height}x{i.width}", "input")
    w.line(1, f"classes {space.classes}", "classes")
    if space.stem or w.has_comments_under("stem"):
        w.line(1, "stem {", "stem")
        for n, layer in enumerate(space.stem):
            k = f"{layer.kernel}x{layer.kernel}"
            if isinstance(layer, StemAttention):
                text = f"{fmt_op(layer.op)} width {layer.channels} heads {layer.heads} stride {layer.stride}"
            elif isinstance(layer, StemConv):
                text = f"conv {k} {layer.channels} stride {layer.stride}"
            else:
                text = f"{layer.kind} {k} stride {layer.stride}"
            w.line(2, text, f"stem.{n}")
        w.close(1, "stem.end")
    b = space.block
    w.line(1, f"block {b.type} expansion {b.expansion} {{", "block")
    w.spec(2, b.spec, "block")
    w.close(1, "block.end")
    for st in space.stages:
        path = f"stage.{st.name}"
        blocks = fmt_ints(st.depths) if st.depths else str(st.blocks)
        head = f"stage {st.name} blocks {blocks} width {st.width} stride {st.stride}"
        if st.expansion is not None:
            head += f" expansion {st.expansion}"
        empty = BlockSpec()
        if st.spec == empty and not st.overrides and not w.has_comments_under(path + "."):
            w.line(1, head, path)
            continue
        w.line(1, head + " {", path)
        w.spec(2, st.spec, path)
        for o in st.overrides:
            opath = f"{path}.block.{o.index}"
            w.line(2, f"block {o.index} {{", opath)
            w.spec(3, o.spec, opath)
            w.close(2, f"{opath}.end")
        w.close(1, f"{path}.end")
    w.close(0, "end")
    return w.text()


def emit_arch(arch: Arch, header: Iterable[str] = ()) -> str:
    """Canonical arch text; ``header`` lines become leading comments (search provenance)."""
    comments = dict(arch.comments)
    extra = tuple(f" {h}" for h in header)
    if extra:
        comments["arch"] = extra + tuple(c for c in comments.get("arch", ()) if c not in extra)
    w = _Writer(comments, arch.trailing)
    w.line(0, f"arch {arch.name} of {arch.space} {{", "arch")
    keys = [b.key for b in arch.blocks]
    ops = [fmt_op(b.op) for b in arch.blocks]
    kw = max((len(k) for k in keys), default=0)
    ow = max((len(o) for o in ops), default=0)
    pending = dict(arch.depths)  # a stage's depth line goes just before its first block
    for b, k, o in zip(arch.blocks, keys, ops, strict=True):
        if b.stage in pending:
            w.line(1, f"{b.stage} depth {pending.pop(b.stage)}", f"arch.depth.{b.stage}")
        text = f"{k.ljust(kw)} {o.ljust(ow)} width {b.width}"
        if b.heads is not None:
            text += f" heads {b.heads}"
        w.line(1, text.rstrip(), f"arch.{k}")
    for stage, d in pending.items():
        w.line(1, f"{stage} depth {d}", f"arch.depth.{stage}")
    w.close(0, "end")
    return w.text()


def emit(doc: Space | Arch) -> str:
    """Canonical text of a space or an arch."""
    return emit_space(doc) if isinstance(doc, Space) else emit_arch(doc)

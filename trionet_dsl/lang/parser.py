"""Text -> IR: the lark grammar in ``grammars/space.lark`` plus a top-down builder.

The builder records where every IR element came from (a *source map*: anchor path ->
line/column), so semantic checks later can point at the exact token, and it attaches
comments to the statement they belong to (the one they end the line of, or else the
next one) so ``fmt`` never drops or moves one.
"""

from __future__ import annotations

import bisect
import contextvars
import functools
import gc
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import cast

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from trionet_dsl.lang.errors import SpaceError, did_you_mean
from trionet_dsl.lang.ir import (
    Arch,
    ArchBlock,
    BlockDefaults,
    BlockOverride,
    BlockSpec,
    ChannelRange,
    Channels,
    InputShape,
    Multiplier,
    Op,
    Space,
    Stage,
    StemAttention,
    StemConv,
    StemPool,
)
from trionet_dsl.lang.keywords import BLOCK_TYPES, DEFAULT_EXPANSION, STATEMENT_WORDS
from trionet_dsl.lang.operators import REGISTRY

_KEYWORD_TEXT = {
    "BLOCKS": "'blocks'",
    "WIDTH": "'width'",
    "STRIDE": "'stride'",
    "EXPANSION": "'expansion'",
    "HEADS": "'heads'",
    "DEPTH": "'depth'",
    "SHAPE": "a shape like 3x3",
    "MULT": "a multiplier like 0.5x",
    "INT": "an integer",
    "NAME": "a name",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "VBAR": "'|'",
    "COMMA": "','",
    "EQUAL": "'='",
    "DOT": "'.'",
    "_SEP": "';'",
    "POOL": "'maxpool' or 'avgpool'",
    "$END": "end of file",
}
MAX_INT = 2**31 - 1
"""Largest integer the language accepts (also keeps ``int()`` away from huge digit strings)."""
MAX_RANGE_VALUES = 4096
MAX_SOURCE_BYTES = 4 * 1024 * 1024
"""Largest source text the front end reads (UTF-8 bytes); a larger file is refused before parsing."""
MAX_MULTIPLIER = 1e6
"""Most values one ``a..b step s`` range may expand to."""

_STATEMENT_WORDS = STATEMENT_WORDS


@functools.cache
def _lark() -> Lark:
    """The compiled LALR parser (built once per process; it is immutable)."""
    try:
        text = resources.files("trionet_dsl.grammars").joinpath("space.lark").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        text = (Path(__file__).resolve().parents[2] / "grammars" / "space.lark").read_text()
    # comments are %ignore'd by the grammar; the lexer hands each one to _collect_comment as it
    # goes (one lexing pass: no second scan of the text, no per-comment line counting)
    return Lark(
        text,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={"COMMENT": _collect_comment},
    )


_COMMENT_SINK: contextvars.ContextVar[list[Token] | None] = contextvars.ContextVar("comment_sink", default=None)


def _collect_comment(tok: Token) -> Token:
    sink = _COMMENT_SINK.get()
    if sink is not None:
        sink.append(tok)
    return tok


@dataclass
class SourceMap:
    """Where each IR element was written: anchor path -> (line, column, width)."""

    file: str
    source: str
    spans: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def error(self, path: str, message: str, hint: str | None = None) -> SpaceError:
        """A SpaceError located at ``path`` (or its nearest recorded ancestor)."""
        p = path
        while p and p not in self.spans:
            p = p.rpartition(".")[0] if "." in p else ""
        line, col, width = self.spans.get(p, (0, 0, 1))
        return SpaceError(message, file=self.file, line=line, column=col, source=self.source, hint=hint, width=width)


@dataclass
class Parsed:
    """A parsed document with its source map (for located semantic errors)."""

    doc: Space | Arch
    source_map: SourceMap


# ---------------------------------------------------------------------------- helpers
def _tok(node: Tree | Token) -> tuple[int, int, int]:
    if isinstance(node, Token):
        return (node.line or 0, node.column or 0, max(1, len(str(node))))
    m = node.meta
    if getattr(m, "empty", True):
        return (0, 0, 1)
    width = (m.end_pos - m.start_pos) if m.line == m.end_line else 1
    return (m.line, m.column, max(1, width))


def _leaf(node: Tree | Token) -> Token:
    """A child that the grammar makes a terminal: lark types every child as ``Tree | Token``."""
    return cast(Token, node)


def _opt_leaf(node: Tree | Token | None) -> Token | None:
    """An optional terminal (``[STEP INT]`` and the like are None when absent: maybe_placeholders)."""
    return cast("Token | None", node)


def _children(tree: Tree) -> list:
    return [c for c in tree.children if c is not None]


class _Builder:
    """Builds IR top-down so that every element's anchor path is known when it is made."""

    def __init__(self, file: str, source: str) -> None:
        self.smap = SourceMap(file, source)
        self.anchors: list[tuple[int, int, str]] = []  # (line, column, path) of statement starts
        self.ends: list[tuple[int, int, str]] = []  # (line, column, path) of closing braces
        self.stage_count = 0

    # -- bookkeeping
    def at(self, path: str, node: Tree | Token, anchor: bool = False) -> None:
        span = _tok(node)
        self.smap.spans.setdefault(path, span)
        if anchor:
            self.anchors.append((span[0], span[1], path))

    def end(self, path: str, node: Tree) -> None:
        line, col, width = _tok(node)
        self.ends.append((line, col, path))
        self.smap.spans.setdefault(path, (line, col, width))  # errors about a whole body point here

    def err(self, node: Tree | Token, message: str, hint: str | None = None) -> SpaceError:
        line, col, width = _tok(node)
        return SpaceError(
            message, file=self.smap.file, line=line, column=col, source=self.smap.source, hint=hint, width=width
        )

    def number(self, tok: Token, what: str) -> int:
        """An INT token (or one dimension of a SHAPE) as an int, bounded by MAX_INT."""
        text = str(tok)
        if len(text.lstrip("0")) > len(str(MAX_INT)) or int(text.lstrip("0") or "0") > MAX_INT:
            raise self.err(
                tok,
                f"{what} {text[:12]}{'...' if len(text) > 12 else ''} is too large",
                f"integers are at most {MAX_INT}",
            )
        return int(text.lstrip("0") or "0")

    def dims(self, tok: Token, what: str) -> list[int]:
        return [self.number(Token(tok.type, d, line=tok.line, column=tok.column), what) for d in str(tok).split("x")]

    def int_(self, tok: Token, what: str, minimum: int = 1) -> int:
        value = self.number(tok, what)
        if value < minimum:
            raise self.err(tok, f"{what} must be >= {minimum}, got {value}")
        return value

    def ints(self, items: list[Tree], what: str) -> tuple[int, ...]:
        out: list[int] = []
        for it in items:
            if it.data == "i_one":
                out.append(self.int_(_leaf(it.children[0]), what))
            else:
                start, stop, step = it.children
                out.extend(self.range_(it, _leaf(start), _leaf(stop), _opt_leaf(step), what))
        if len(set(out)) != len(out):
            raise self.err(items[0], f"duplicate {what} choices: {out}", "list each choice once")
        return tuple(out)

    def range_(self, node: Tree, start: Token, stop: Token, step: Token | None, what: str) -> range:
        a, b = self.int_(start, what), self.int_(stop, what)
        s = self.int_(step, "step") if step is not None else 1
        if b < a:
            raise self.err(node, f"empty range {a}..{b}", f"write it as {b}..{a}")
        r = range(a, b + 1, s)
        if len(r) > MAX_RANGE_VALUES:
            raise self.err(
                node,
                f"range {a}..{b} step {s} has {len(r)} values, more than {MAX_RANGE_VALUES}",
                "use a larger step or a narrower range",
            )
        return r

    # -- documents
    def document(self, tree: Tree) -> Space | Arch:
        (top,) = tree.children
        return self.space(top) if top.data == "space" else self.arch(top)

    def space(self, t: Tree) -> Space:
        name_tok, *items = t.children
        end = items.pop()
        self.at("space", name_tok, anchor=True)
        self.end("end", end)
        fields: dict = {"name": str(name_tok), "stem": (), "stages": []}
        seen: dict[str, Tree] = {}
        for it in items:
            kind = it.data
            if kind in ("input_stmt", "classes_stmt", "stem", "block_defaults") and kind in seen:
                raise self.err(
                    it,
                    f"duplicate '{kind.split('_')[0]}' statement",
                    f"it was first given on line {seen[kind].meta.line}",
                )
            seen[kind] = it
            if kind == "input_stmt":
                self.at("input", it, anchor=True)
                dims = self.dims(_leaf(it.children[0]), "input dimension")
                if len(dims) != 3:
                    raise self.err(
                        it.children[0], f"input must be CxHxW, got {it.children[0]}", "for example: input 3x224x224"
                    )
                if min(dims) < 1:
                    raise self.err(it.children[0], "input dimensions must be >= 1")
                fields["input"] = InputShape(channels=dims[0], height=dims[1], width=dims[2])
            elif kind == "classes_stmt":
                self.at("classes", it, anchor=True)
                fields["classes"] = self.int_(_leaf(it.children[0]), "classes")
            elif kind == "stem":
                fields["stem"] = self.stem(it)
            elif kind == "block_defaults":
                fields["block"] = self.block_defaults(it)
            elif kind == "stage":
                fields["stages"].append(self.stage(it))
        for kind, example in (("input_stmt", "input 3x224x224"), ("classes_stmt", "classes 1000")):
            if kind not in seen:
                word = kind.split("_")[0]
                raise self.err(
                    name_tok, f"space '{name_tok}' has no '{word}' statement", f"add a line such as: {example}"
                )
        if not fields["stages"]:
            raise self.err(
                name_tok, f"space '{name_tok}' has no stages", "add e.g.: stage s1 blocks 3 width 64 stride 1"
            )
        stage_names: set[str] = set()
        for i, n in enumerate(st.name for st in fields["stages"]):
            if n in stage_names:
                raise self.smap.error(f"stage.{n}#{i}", f"duplicate stage name '{n}'", "every stage needs its own name")
            stage_names.add(n)
        fields["stages"] = tuple(fields["stages"])
        return Space(**fields)

    def stem(self, t: Tree) -> tuple[StemConv | StemPool | StemAttention, ...]:
        *layers, end = t.children
        self.at("stem", t, anchor=True)
        self.end("stem.end", end)
        out: list[StemConv | StemPool | StemAttention] = []
        for i, layer in enumerate(layers):
            path = f"stem.{i}"
            self.at(path, layer, anchor=True)
            if layer.data == "stem_conv":
                shape, ch, stride = layer.children
                k = self.square(_leaf(shape))
                out.append(StemConv(kernel=k, channels=self.int_(_leaf(ch), "channels"), stride=self.stride(stride)))
            elif layer.data == "stem_attn":
                out.append(self.stem_attention(layer, path))
            else:
                pool, shape, stride = layer.children
                out.append(StemPool(kind=str(pool), kernel=self.square(_leaf(shape)), stride=self.stride(stride)))
        return tuple(out)

    def stem_attention(self, layer: Tree, path: str) -> StemAttention:
        """``local(span=7) width 64 heads 8 [stride 2]``: one fixed local-attention layer."""
        op_t, _w, ch, _h, heads_t, stride_t = layer.children
        op = self.op(op_t, f"{path}.op")
        if op.kind != "local":
            raise self.err(
                _leaf(op_t.children[0]),
                f"a stem attention layer is local(span=K), not {op.kind}",
                "write e.g. 'local(span=7) width 64 heads 8 stride 2', or use a conv stem",
            )
        if op.heads is not None:
            raise self.err(_leaf(op_t.children[0]), "a stem layer's heads are written once: 'heads N' after the width")
        channels = self.int_(_leaf(ch), "channels")
        heads = self.int_(_leaf(heads_t), "heads")
        stride = self.stride(stride_t)
        if channels % heads:
            raise self.err(
                _leaf(heads_t), f"{heads} heads do not divide width {channels}", "pick a divisor of the width"
            )
        span = op.span or 1
        if stride > span:
            raise self.err(
                _leaf(stride_t.children[1]),
                f"local(span={span}) cannot do stride {stride}: its stride is an average pool after attention, "
                f"and a {stride}x{stride} pool wider than the {span}x{span} neighbourhood averages outputs "
                "whose neighbourhoods do not overlap",
                f"use a stride of at most {span}, or a pooling layer after it",
            )
        return StemAttention(op=op, channels=channels, heads=heads, stride=stride)

    def square(self, shape: Token) -> int:
        dims = self.dims(shape, "kernel size")
        if len(dims) != 2 or dims[0] != dims[1]:
            raise self.err(shape, f"kernel must be square KxK, got {shape}", "for example: 3x3")
        if dims[0] < 1:
            raise self.err(shape, "kernel size must be >= 1")
        return dims[0]

    def stride(self, t: Tree | None) -> int:
        return 1 if t is None else self.int_(_leaf(t.children[1]), "stride")

    def block_defaults(self, t: Tree) -> BlockDefaults:
        type_tok, expansion, *stmts = t.children
        end = stmts.pop()
        self.at("block", t, anchor=True)
        self.end("block.end", end)
        kind = str(type_tok)
        if kind not in BLOCK_TYPES:
            raise self.err(type_tok, f"unknown block type '{type_tok}'", did_you_mean(kind, list(BLOCK_TYPES)))
        exp = DEFAULT_EXPANSION[kind] if expansion is None else self.int_(_leaf(expansion.children[1]), "expansion")
        return BlockDefaults(type=kind, expansion=exp, spec=self.spec(stmts, "block"))

    def spec(self, stmts: list[Tree], path: str) -> BlockSpec:
        fields: dict = {}
        for st in stmts:
            key = {"op_stmt": "ops", "width_stmt": "width", "heads_stmt": "heads"}[st.data]
            word = {"ops": "op", "width": "width", "heads": "heads"}[key]
            if key in fields:
                raise self.err(st, f"duplicate '{word}' statement", "give each of op/width/heads once per level")
            spath = f"{path}.{word}"
            self.at(spath, st, anchor=True)
            if key == "ops":
                ops = [self.op(o, f"{spath}.{i}") for i, o in enumerate(st.children)]
                sigs = [o.signature for o in ops]
                for i, s in enumerate(sigs):
                    if s in sigs[:i]:
                        raise self.err(st.children[i], f"duplicate operator choice {s}")
                fields["ops"] = tuple(ops)
            elif key == "width":
                fields["width"] = tuple(self.width_item(w) for w in st.children[1:])
            else:
                fields["heads"] = self.ints(st.children[1:], "heads")
        return BlockSpec(**fields)

    def op(self, t: Tree, path: str) -> Op:
        """An operator as the registry declares it: its arguments, ``heads`` if it is an attention one."""
        name_tok, args = t.children
        name = str(name_tok)
        self.at(path, t)
        spec = REGISTRY.get(name)
        if spec is None:
            raise self.err(name_tok, f"unknown operator '{name}'", did_you_mean(name, REGISTRY.names))
        allowed = spec.keywords
        given: dict[str, tuple[int, ...]] = {}
        for arg in _children(args) if args is not None else []:
            key_tok, *vals = arg.children
            key = str(key_tok)
            if key not in allowed:
                raise self.err(
                    key_tok,
                    f"operator '{name}' has no argument '{key}'",
                    did_you_mean(key, allowed) if allowed else f"'{name}' takes no arguments",
                )
            if key in given:
                raise self.err(key_tok, f"argument '{key}' given twice")
            self.at(f"{path}.{key}", arg)
            given[key] = self.ints(vals, key)
        for key in spec.arg_names:
            if key in given and len(given[key]) != 1:
                raise self.err(
                    t,
                    f"'{key}' takes one value; list separate operators to search it",
                    f"e.g. op {name}({key}=3) | {name}({key}=5)",
                )
        values = {k: v[0] for k, v in given.items() if k != "heads"}
        return Op(kind=name, args=spec.normalise(values), heads=given.get("heads"))

    def width_item(self, t: Tree) -> Channels | Multiplier | ChannelRange:
        if t.data == "w_abs":
            return Channels(value=self.int_(_leaf(t.children[0]), "width"))
        if t.data == "w_mult":
            factor = float(str(t.children[0])[:-1])
            if factor <= 0:
                raise self.err(t.children[0], "width multiplier must be > 0")
            if factor > MAX_MULTIPLIER:
                raise self.err(
                    t.children[0],
                    f"width multiplier {t.children[0]} is too large",
                    f"multipliers are at most {MAX_MULTIPLIER:g}x",
                )
            return Multiplier(factor=factor)
        start, stop, step = t.children
        r = self.range_(t, _leaf(start), _leaf(stop), _opt_leaf(step), "width")
        return ChannelRange(start=r.start, stop=int(_leaf(stop)), step=r.step)

    def stage(self, t: Tree) -> Stage:
        name_tok, *rest = t.children
        name = str(name_tok)
        if name in _STATEMENT_WORDS:
            # arch lines start with the stage name ("width.0 ..." would read as 'width'), so keep keywords out
            raise self.err(name_tok, f"'{name}' is a keyword and cannot name a stage", "name stages like s1, s2, ...")
        path = f"stage.{name}"
        # a duplicate name is reported at its second occurrence: stage i's name is at stage.NAME#i
        idx = self.stage_count
        self.stage_count += 1
        self.at(f"stage.{name}#{idx}", name_tok)
        self.at(path, t, anchor=True)
        body = rest.pop() if rest and isinstance(rest[-1], Tree) and rest[-1].data == "stage_body" else None
        attrs: dict[str, int] = {}
        depths: tuple[int, ...] | None = None
        for a in rest:
            kw, *vals = a.children
            key = str(kw)
            if key in attrs:
                raise self.err(kw, f"stage attribute '{key}' given twice")
            self.at(f"{path}.attr.{key}", a)
            if a.data == "stage_blocks":
                choices = self.ints(vals, "blocks")
                attrs[key] = max(choices)
                depths = choices if len(choices) > 1 else None
            else:
                attrs[key] = self.int_(_leaf(vals[0]), key)
        for key, example in (("blocks", "blocks 3"), ("width", "width 64")):
            if key not in attrs:
                raise self.err(name_tok, f"stage '{name}' needs '{key}'", f"add e.g. '{example}' after the name")
        stmts, overrides = [], []
        if body is not None:
            *items, end = body.children
            self.end(f"{path}.end", end)
            for it in items:
                if it.data == "override":
                    overrides.append(it)
                else:
                    stmts.append(it)
        spec = self.spec(stmts, path)
        ovs = []
        seen: set[int] = set()
        for o in overrides:
            idx_tok, *ostmts = o.children
            oend = ostmts.pop()
            index = self.int_(_leaf(idx_tok), "block index", minimum=0)
            opath = f"{path}.block.{index}"
            if index in seen:
                raise self.err(idx_tok, f"block {index} of stage '{name}' is overridden twice")
            if index >= attrs["blocks"]:
                most = "at most " if depths else ""
                raise self.err(
                    idx_tok,
                    f"stage '{name}' has {most}{attrs['blocks']} blocks; there is no block {index}",
                    f"block indices run from 0 to {attrs['blocks'] - 1}"
                    + (
                        "; an override of a block past the smallest depth applies when the block exists"
                        if depths
                        else ""
                    ),
                )
            seen.add(index)
            self.at(opath, o, anchor=True)
            self.end(f"{opath}.end", oend)
            ovs.append(BlockOverride(index=index, spec=self.spec(ostmts, opath)))
        return Stage(
            name=name,
            blocks=attrs["blocks"],
            depths=depths,
            width=attrs["width"],
            stride=attrs.get("stride", 1),
            expansion=attrs.get("expansion"),
            spec=spec,
            overrides=tuple(ovs),
        )

    def arch(self, t: Tree) -> Arch:
        name_tok, space_tok, *blocks = t.children
        end = blocks.pop()
        self.at("arch", name_tok, anchor=True)
        self.end("end", end)
        out: list[ArchBlock] = []
        keys: set[str] = set()
        depths: dict[str, int] = {}
        for b in blocks:
            if b.data == "arch_depth":
                stage_tok, _kw, value = b.children
                stage = str(stage_tok)
                if stage in depths:
                    raise self.err(stage_tok, f"the depth of stage '{stage}' is given twice")
                self.at(f"arch.depth.{stage}", b, anchor=True)
                depths[stage] = self.int_(_leaf(value), "depth")
                continue
            stage_tok, idx_tok, op_tree, *attrs = b.children
            index = self.number(_leaf(idx_tok), "block index")
            key = f"{stage_tok}.{index}"
            path = f"arch.{key}"
            if key in keys:
                raise self.err(stage_tok, f"block {key} is given twice")
            keys.add(key)
            self.at(path, b, anchor=True)
            op = self.op(op_tree, f"{path}.op")
            if op.heads is not None:
                raise self.err(
                    op_tree,
                    "an arch block fixes heads with 'heads N', not inside the operator",
                    f"write: {key} {op.signature} width W heads {op.heads[0]}",
                )
            vals: dict[str, int] = {}
            for a in attrs:
                kw, val = a.children
                if str(kw) in vals:
                    raise self.err(kw, f"'{kw}' given twice")
                self.at(f"{path}.{kw}", a)
                vals[str(kw)] = self.int_(_leaf(val), str(kw))
            if "width" not in vals:
                raise self.err(b, f"block {key} needs a width", f"write: {key} {op.signature} width 64")
            out.append(
                ArchBlock(stage=str(stage_tok), index=index, op=op, width=vals["width"], heads=vals.get("heads"))
            )
        return Arch(name=str(name_tok), space=str(space_tok), blocks=tuple(out), depths=depths)

    # -- comments
    def attach_comments(self, comments: list[Token]) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
        """Attach each comment to the statement it belongs to: ``(leading, trailing)``.

        A comment with code before it on its line *trails* the last statement start or
        closing brace before it (``block 0 { op axial; heads 8 }  # x`` trails block 0's
        ``}``), so ``fmt`` writes it at the end of that statement's line. A comment alone on
        its line *leads* the next statement or closing brace (``"eof"`` after the last
        one), and so does a second end-of-line comment of a statement that spans lines:
        a canonical line holds one. Either way each comment keeps its place among the
        statements.
        """
        # statement starts and closing braces in source order (they never share a position)
        marks = sorted(self.anchors + self.ends)
        positions = [(m[0], m[1]) for m in marks]
        source = self.smap.source
        leading: dict[str, list[str]] = {}
        trailing: dict[str, str] = {}
        for c in comments:
            body = str(c)[1:].rstrip()
            pos = (c.line, c.column)
            i = bisect.bisect_left(positions, pos)  # marks[:i] come before the comment
            start = c.start_pos or 0
            after_code = source[source.rfind("\n", 0, start) + 1 : start].strip() != ""
            if after_code and i > 0 and marks[i - 1][2] not in trailing:
                trailing[marks[i - 1][2]] = body
            else:
                leading.setdefault(marks[i][2] if i < len(marks) else "eof", []).append(body)
        return {k: tuple(v) for k, v in leading.items()}, trailing


_NUMBER_WORDS = {
    "width": "widths are channel counts >= 1, or multiples of the stage width such as 0.5x",
    "heads": "head counts are >= 1",
    "blocks": "a stage has 1 or more blocks (depth choices: 2 | 3 | 4 or 2..4)",
    "depth": "a stage's depth is 1 or more blocks",
    "stride": "strides are >= 1",
    "expansion": "expansions are >= 1",
    "classes": "classes is a count >= 1",
    "kernel": "kernel sizes are odd numbers >= 1",
    "span": "spans are odd numbers >= 1",
    "step": "a range's step is >= 1",
    "block": "block indices run from 0",
    "input": "input is CxHxW with every size >= 1",
}


def _code(text: str) -> str:
    """``text`` with comments blanked out (same length, so positions still match)."""
    return re.sub(r"#[^\n]*", lambda m: " " * len(m.group(0)), text)


def _word_before(code: str, pos: int) -> str | None:
    """The last word before ``pos`` on its line (``width`` in ``width 32 | -8``; not the x of ``1.0x``)."""
    words = re.findall(r"(?<![A-Za-z0-9_.])[A-Za-z_][A-Za-z0-9_]*", code[code.rfind("\n", 0, pos) + 1 : pos])
    return words[-1] if words else None


def _context_error(text: str, file: str, pos: int) -> SpaceError | None:
    """A message naming the likely cause of a syntax error at ``pos``, where one is known."""
    code = _code(text)
    rest = code[pos:]
    head = re.match(r"\s*(space|arch)\s+([A-Za-z_][A-Za-z0-9_]*)", code)

    def error(at: int, message: str, hint: str, width: int = 1) -> SpaceError:
        line = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        return SpaceError(message, file=file, line=line, column=col, source=text, hint=hint, width=width)

    # a negative number: '-' where a number may start
    neg = re.match(r"-[0-9]+(?:\.[0-9]+)?x?", rest)
    if neg and not re.match(r"[A-Za-z0-9_.]", code[pos - 1 : pos]):
        word = _word_before(code, pos)
        what = word if word in _NUMBER_WORDS else "number"
        return error(
            pos,
            f"negative {what} {neg.group(0)}",
            _NUMBER_WORDS.get(word or "", "numbers are counts and sizes, never negative"),
            len(neg.group(0)),
        )
    # a decimal number without 'x': the '.' of '0.5'
    digits = re.search(r"(?<![A-Za-z0-9_.])[0-9]+$", code[:pos])
    dec = re.match(r"\.[0-9]+(?![0-9x])", rest)
    if digits and dec:
        number, start = digits.group(0) + dec.group(0), digits.start()
        if _word_before(code, start) == "width":
            return error(
                start,
                f"width {number} needs an 'x' to be a multiplier",
                f"write {number}x for {number} times the stage's width, or a whole channel count",
                len(number),
            )
        return error(
            start,
            f"{number} is not a whole number",
            "only width multipliers are decimal (0.5x); every other number is whole",
            len(number),
        )
    arch_line = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\.([0-9]+)", rest)
    depth = code[:pos].count("{") - code[:pos].count("}")
    if head and depth <= 0 and "{" in code[:pos]:
        kind, name = head.groups()
        if arch_line:
            hint = (
                f"move it inside arch '{name}', before its closing '}}'"
                if kind == "arch"
                else f"a file holds one space or one arch: arch blocks go in an .arch file, inside "
                f"'arch NAME of {name} {{ ... }}'"
            )
            return error(
                pos,
                f"arch block '{arch_line.group(0)}' after the end of {kind} '{name}'",
                hint,
                len(arch_line.group(1)),
            )
        next_word = re.match(r"\S+", rest)
        shown = next_word.group(0) if next_word else rest[:1]
        if shown in ("space", "arch"):
            return error(
                pos,
                f"a second document ('{shown}') after the end of {kind} '{name}'",
                f"a file holds one space or one arch: put this {shown} in a file of its own",
                len(shown),
            )
        return error(
            pos,
            f"unexpected {shown!r} after the end of {kind} '{name}'",
            f"the '}}' before it closed {kind} '{name}': is a '{{' missing above, or a '}}' too many?",
            len(shown),
        )
    if head and head.group(1) == "space":
        block_stmt = re.search(r"\bblock\s+$", code[:pos])
        index = re.match(r"[0-9]+", rest)
        if block_stmt and index and depth == 1:
            stages = re.findall(r"\bstage\s+([A-Za-z_][A-Za-z0-9_]*)", code[:pos])
            where = f"stage {stages[-1]}" if stages else "stage s1"
            i = index.group(0)
            return error(
                block_stmt.start(),
                f"block override 'block {i} {{ ... }}' outside a stage",
                f"an override goes inside the body of the stage it changes: {where} ... {{ block {i} "
                "{ ... } }; at space level, 'block bottleneck { ... }' sets every block's defaults",
                5,
            )
        if arch_line:
            stage, i = arch_line.groups()
            return error(
                pos,
                f"arch block '{arch_line.group(0)}' inside space '{head.group(2)}'",
                f"'{stage}.{i} OPERATOR width W' lines belong in an .arch file (arch NAME of {head.group(2)} "
                f"{{ ... }}); to narrow block {i}'s choices here, write 'block {i} {{ op ...; width ... }}' "
                f"in the body of stage {stage}",
                len(stage),
            )
        if re.match(r"arch\b", rest):
            return error(
                pos,
                f"an arch inside space '{head.group(2)}'",
                "a file holds one space or one arch: put the arch in an .arch file of its own",
                4,
            )
    return None


def _syntax_error(exc: UnexpectedInput, text: str, file: str) -> SpaceError:
    line, col = exc.line, exc.column
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        if not _code(text).strip():
            return SpaceError(
                "the file is empty" if not text.strip() else "the file has only comments",
                file=file,
                line=1,
                column=1,
                source=text,
                hint="a space starts with 'space NAME {', an arch with 'arch NAME of SPACE {' "
                "(see spaces/trionet_small.space)",
            )
        lines = text.rstrip().split("\n")  # the end of the last non-blank line
        line, col = len(lines), len(lines[-1].rstrip("\r")) + 1
        return SpaceError(
            "unexpected end of file", file=file, line=line, column=col, source=text, hint="a '}' is probably missing"
        )
    if isinstance(exc, UnexpectedCharacters):
        # lark declares ``pos_in_stream = None`` on the base class; the lexer always sets it here
        pos = cast(int, exc.pos_in_stream)
        known = _context_error(text, file, pos)
        if known is not None:
            return known
        ch = text[pos] if pos < len(text) else "?"
        return SpaceError(
            f"unexpected character {ch!r}",
            file=file,
            line=line,
            column=col,
            source=text,
            hint="names are letters, digits and '_'; comments start with '#'",
        )
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    if tok.start_pos is not None:
        known = _context_error(text, file, tok.start_pos)
        if known is not None:
            return known
    expected = sorted({_KEYWORD_TEXT.get(e, f"'{e.lower()}'") for e in exc.expected if not e.startswith("__")})
    hint = f"expected {', '.join(expected)}" if expected else None
    if tok.type == "NAME":
        # suggest only keywords that the parser could actually take here
        words = [
            w
            for w in _STATEMENT_WORDS
            if w.upper() in exc.expected or (w in ("maxpool", "avgpool") and "POOL" in exc.expected)
        ]
        close = did_you_mean(str(tok), words)
        if close and close.startswith("did you mean"):
            hint = close.split(" (")[0] + (f"; {hint}" if hint else "")
    return SpaceError(
        f"unexpected {str(tok)!r}", file=file, line=line, column=col, source=text, hint=hint, width=len(str(tok))
    )


def parse_document(text: str, file: str = "<input>") -> Parsed:
    """Parse text into IR (Space or Arch) plus its source map; raises SpaceError only."""
    if not isinstance(text, str):
        raise SpaceError("input is not text", file=file)
    _check_size(text, file)
    # the tree of a large file is hundreds of thousands of young objects: the cyclic collector's
    # repeated passes over them made the time per KB grow with the size (x2 at 1 MB); the input is
    # bounded by MAX_SOURCE_BYTES and the tree holds no cycles, so it is paused while reading
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_document(text, file)
    finally:
        if was_enabled:
            gc.enable()


def _parse_document(text: str, file: str) -> Parsed:
    comments: list[Token] = []
    try:
        tree = _parse_with_comments(_lark(), text, comments)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, file) from None
    except LarkError as exc:  # pragma: no cover - defensive: any other lark failure
        raise SpaceError(f"could not parse: {exc}", file=file, source=text) from None
    builder = _Builder(file, text)
    try:
        doc = builder.document(tree)
        notes, trailing = builder.attach_comments(comments)
    except SpaceError:
        raise
    except (ValueError, TypeError, LookupError, ArithmeticError) as exc:  # pragma: no cover - last resort
        # every known failure is checked above with a located message; this only keeps a
        # bug in the builder from surfacing as a traceback (the fuzz tests reject it)
        raise SpaceError(
            f"internal error while reading the file: {type(exc).__name__}: {exc}",
            file=file,
            source=text,
            hint="please report this input as a bug",
        ) from exc
    if notes or trailing:
        doc = doc.model_copy(update={"comments": notes, "trailing": trailing})
    return Parsed(doc, builder.smap)


def _too_large(file: str, line: int, column: int, size: str) -> SpaceError:
    return SpaceError(
        f"the file is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MiB ({size}); it is not read",
        file=file,
        line=line,
        column=column,
        hint=f"a .space or .arch file is at most {MAX_SOURCE_BYTES:,} bytes; this position is past the limit",
    )


def _check_size(text: str, file: str) -> None:
    """Refuse text over MAX_SOURCE_BYTES (UTF-8) before any parsing, located where the limit is crossed."""
    if len(text) <= MAX_SOURCE_BYTES // 4:  # cannot exceed the limit even at 4 bytes a character
        return
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_SOURCE_BYTES:
        return
    head = data[:MAX_SOURCE_BYTES]
    line = head.count(b"\n") + 1
    column = len(head[head.rfind(b"\n") + 1 :].decode("utf-8", "ignore")) + 1
    raise _too_large(file, line, column, f"{len(data):,} bytes")


def _parse_with_comments(parser: Lark, text: str, sink: list[Token]) -> Tree:
    """Parse and collect comment tokens (lark ignores them; we keep them for fmt)."""
    reset = _COMMENT_SINK.set(sink)
    try:
        return parser.parse(text)
    finally:
        _COMMENT_SINK.reset(reset)


def parse(text: str, file: str = "<input>") -> Space | Arch:
    """Parse `.space` or `.arch` text into IR (syntax and structural checks only)."""
    return parse_document(text, file).doc


def read_text(path: str | Path) -> str:
    """Read a source file, turning OS and decoding failures into SpaceError."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_SOURCE_BYTES + 1)  # never more: a huge file is refused unread
    except OSError as exc:
        raise SpaceError(f"cannot read {p}: {exc.strerror or exc}", file=str(p)) from None
    if len(data) > MAX_SOURCE_BYTES:
        head = data[:MAX_SOURCE_BYTES]
        column = len(head[head.rfind(b"\n") + 1 :].decode("utf-8", "ignore")) + 1
        raise _too_large(str(p), head.count(b"\n") + 1, column, f"more than {MAX_SOURCE_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpaceError(
            f"{p} is not UTF-8 text (byte {exc.start})", file=str(p), hint="a .space file is plain text"
        ) from None

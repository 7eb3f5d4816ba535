"""Structural diff of two archs (per-block changes) or two spaces (choices added/removed).

Works on the resolved IR, not on text, so formatting and default spelling never show
up as changes; the output is plain data (pydantic) for both the rich table and ``--json``.
"""

from __future__ import annotations

from pydantic import BaseModel

from trionet_dsl.lang.ir import Arch
from trionet_dsl.space.resolve import ResolvedSpace


class BlockChange(BaseModel):
    block: str
    a: str | None  # None: the block is not in A
    b: str | None
    changed: list[str]  # subset of op/width/heads, or ["added"]/["removed"]

    @property
    def equal(self) -> bool:
        return not self.changed


class DepthChange(BaseModel):
    """A stage whose depth differs (None: the arch does not state it, so it has the stage's full depth)."""

    stage: str
    a: int | None
    b: int | None


class ArchDiff(BaseModel):
    a: str
    b: str
    blocks: list[BlockChange]
    depths: list[DepthChange] = []

    @property
    def changed(self) -> list[BlockChange]:
        return [c for c in self.blocks if c.changed]

    @property
    def equal(self) -> list[BlockChange]:
        return [c for c in self.blocks if not c.changed]


def _describe(b) -> str:
    return f"{b.op.signature} width {b.width}" + (f" heads {b.heads}" if b.heads is not None else "")


def diff_archs(a: Arch, b: Arch) -> ArchDiff:
    """Per-block comparison, in A's block order then B's extra blocks; stages whose depth changed
    (the blocks a shallower stage lacks show as added or removed)."""
    bb = {x.key: x for x in b.blocks}
    keys = [x.key for x in a.blocks] + [k for k in bb if k not in {x.key for x in a.blocks}]
    ab = {x.key: x for x in a.blocks}
    rows = []
    for k in keys:
        x, y = ab.get(k), bb.get(k)
        if x is None or y is None:
            rows.append(
                BlockChange(
                    block=k,
                    a=_describe(x) if x else None,
                    b=_describe(y) if y else None,
                    changed=["added" if x is None else "removed"],
                )
            )
            continue
        changed = []
        if x.op.signature != y.op.signature:
            changed.append("op")
        if x.width != y.width:
            changed.append("width")
        if x.heads != y.heads:
            changed.append("heads")
        rows.append(BlockChange(block=k, a=_describe(x), b=_describe(y), changed=changed))
    stages = [*a.depths, *(k for k in b.depths if k not in a.depths)]
    depths = [
        DepthChange(stage=k, a=a.depths.get(k), b=b.depths.get(k)) for k in stages if a.depths.get(k) != b.depths.get(k)
    ]
    return ArchDiff(a=a.name, b=b.name, blocks=rows, depths=depths)


class SpaceBlockChange(BaseModel):
    block: str
    status: str  # "same" | "changed" | "added" | "removed"
    ops_added: list[str] = []
    ops_removed: list[str] = []
    widths_added: list[int] = []
    widths_removed: list[int] = []
    heads_added: dict[str, list[int]] = {}
    heads_removed: dict[str, list[int]] = {}
    choices_a: int = 0
    choices_b: int = 0


class SpaceDiff(BaseModel):
    a: str
    b: str
    header: list[str]  # changes outside the blocks (input, classes, stem, shapes)
    blocks: list[SpaceBlockChange]
    size_a: int
    size_b: int


def diff_spaces(a: ResolvedSpace, b: ResolvedSpace) -> SpaceDiff:
    """Which choices each block gained or lost between two spaces."""
    header = []
    if a.space.input != b.space.input:
        i, j = a.space.input, b.space.input
        header.append(f"input {i.channels}x{i.height}x{i.width} -> {j.channels}x{j.height}x{j.width}")
    if a.space.classes != b.space.classes:
        header.append(f"classes {a.space.classes} -> {b.space.classes}")
    if a.space.stem != b.space.stem:
        header.append("stem changed")
    if a.space.block.type != b.space.block.type:
        header.append(f"block {a.space.block.type} -> {b.space.block.type}")
    for name, da in a.depth_choices.items():
        db = b.depth_choices.get(name)
        if db is not None and da != db:
            header.append(f"stage {name} depth {'|'.join(map(str, da))} -> {'|'.join(map(str, db))}")
    rows = []
    keys = [x.key for x in a.blocks] + [x.key for x in b.blocks if x.key not in a.by_key]
    for k in keys:
        x, y = a.by_key.get(k), b.by_key.get(k)
        if x is None or y is None:
            rows.append(
                SpaceBlockChange(
                    block=k,
                    status="added" if x is None else "removed",
                    choices_a=x.num_choices if x else 0,
                    choices_b=y.num_choices if y else 0,
                )
            )
            continue
        xo = {o.op.signature: o for o in x.options}
        yo = {o.op.signature: o for o in y.options}
        row = SpaceBlockChange(
            block=k,
            status="same",
            ops_added=[s for s in yo if s not in xo],
            ops_removed=[s for s in xo if s not in yo],
            widths_added=[w for w in y.widths if w not in x.widths],
            widths_removed=[w for w in x.widths if w not in y.widths],
            heads_added={s: [h for h in yo[s].heads if h not in xo[s].heads] for s in xo if s in yo},
            heads_removed={s: [h for h in xo[s].heads if h not in yo[s].heads] for s in xo if s in yo},
            choices_a=x.num_choices,
            choices_b=y.num_choices,
        )
        row.heads_added = {s: v for s, v in row.heads_added.items() if v}
        row.heads_removed = {s: v for s, v in row.heads_removed.items() if v}
        shape_changed = (x.in_channels, x.out_channels, x.stride, x.kind) != (
            y.in_channels,
            y.out_channels,
            y.stride,
            y.kind,
        )
        if (
            row.ops_added
            or row.ops_removed
            or row.widths_added
            or row.widths_removed
            or row.heads_added
            or row.heads_removed
            or shape_changed
        ):
            row.status = "changed"
        rows.append(row)
    return SpaceDiff(a=a.name, b=b.name, header=header, blocks=rows, size_a=a.size, size_b=b.size)

"""The typed IR: the single source of truth between text, graph, supernet and search.

Every model is frozen and hashable, holds the user's spelling (a width written as
``0.5x`` stays a multiplier, so ``trionet fmt`` keeps it) and compares by value, so
``parse(emit(x)) == x`` is a meaningful property. Comments are part of the IR so formatting
never loses or moves them: ``comments`` (anchor path -> the comment lines written before
that statement or closing brace; ``"eof"``: after the last one) and ``trailing`` (anchor
path -> the comment written at the end of that statement's line).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trionet_dsl.lang.keywords import DEFAULT_EXPANSION
from trionet_dsl.lang.operators import REGISTRY, Operator


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@functools.lru_cache(maxsize=4096)
def _signature(kind: str, args: tuple[tuple[str, int], ...]) -> str:
    return f"{kind}({', '.join(f'{k}={v}' for k, v in args)})" if args else kind


class Op(_Node):
    """One spatial operator choice: ``conv(kernel=3)``, ``local(span=7)``, ``axial`` …

    ``kind`` names an operator of the registry (:mod:`trionet_dsl.lang.operators`), which
    declares its arguments: ``args`` holds their values in declared order, defaults filled
    in (``Op(kind="conv")`` is ``conv(kernel=3)``). Arguments may also be passed by name
    (``Op(kind="conv", kernel=5)``) and read by name (``op.kernel``, ``op.span``,
    ``op.arg("dilation")``). An unknown kind or argument is a ValueError naming the known
    ones. ``heads`` overrides the block's head choices for this operator only.
    """

    kind: str
    args: tuple[tuple[str, int], ...] = ()
    heads: tuple[int, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        kind = data.get("kind")
        spec = REGISTRY.get(kind) if isinstance(kind, str) else None
        if spec is None:
            raise ValueError(f"unknown operator {kind!r}; registered operators: {', '.join(REGISTRY.names)}")
        given: dict[str, int | None] = dict(data.pop("args", None) or ())
        for key in [k for k in data if k not in ("kind", "heads")]:
            given[key] = data.pop(key)
        data["args"] = spec.normalise({k: v for k, v in given.items() if v is not None})
        return data

    def arg(self, name: str) -> int | None:
        """The value of argument ``name`` (None when absent or not an argument of this operator)."""
        for k, v in self.args:
            if k == name:
                return v
        return None

    def require(self, name: str) -> int:
        """The value of argument ``name``; ValueError when it has none (a formula needs it)."""
        value = self.arg(name)
        if value is None:
            raise ValueError(f"{self.signature} has no {name}")
        return value

    @property
    def kernel(self) -> int | None:
        return self.arg("kernel")

    @property
    def span(self) -> int | None:
        return self.arg("span")

    @property
    def operator(self) -> Operator:
        """Its registry entry (KeyError naming the registered operators if it was removed)."""
        return REGISTRY[self.kind]

    @property
    def is_attention(self) -> bool:
        return self.operator.attention

    @property
    def signature(self) -> str:
        """The operator's identity without head choices, as written in arch files."""
        return _signature(self.kind, self.args)

    def without_heads(self) -> Op:
        return self.model_copy(update={"heads": None})


class Channels(_Node):
    """An absolute channel count: ``48``."""

    kind: Literal["abs"] = "abs"
    value: int


class ChannelRange(_Node):
    """An inclusive range of channel counts: ``32..128 step 16``."""

    kind: Literal["range"] = "range"
    start: int
    stop: int
    step: int = 1


class Multiplier(_Node):
    """A multiple of the stage's base width: ``0.75x``."""

    kind: Literal["mult"] = "mult"
    factor: float


WidthItem = Annotated[Channels | ChannelRange | Multiplier, Field(discriminator="kind")]


class BlockSpec(_Node):
    """The searchable part of a block; ``None`` means 'inherit from the enclosing level'."""

    ops: tuple[Op, ...] | None = None
    width: tuple[WidthItem, ...] | None = None
    heads: tuple[int, ...] | None = None


class StemConv(_Node):
    """``conv 7x7 64 stride 2``: conv (no bias) + BN + ReLU, padding (kernel-1)//2."""

    kind: Literal["conv"] = "conv"
    kernel: int
    channels: int
    stride: int = 1


class StemPool(_Node):
    """``maxpool 3x3 stride 2``, ``avgpool 2x2 stride 2``: padding (kernel-1)//2, as torchvision's ResNet stem
    (3x3 pooling padded by 1) and 2x2/2 pooling layers (padded by 0)."""

    kind: Literal["maxpool", "avgpool"]
    kernel: int
    stride: int = 1


class StemAttention(_Node):
    """``local(span=7) width 64 heads 8 stride 2``: SASA local attention + BN + ReLU in the stem.

    As SASA's full-attention ResNet (Ramachandran et al. 2019) puts attention in the stem; the
    stride is the operator's average pool after attention (so at most its span).
    """

    kind: Literal["attention"] = "attention"
    op: Op
    channels: int
    heads: int
    stride: int = 1

    @property
    def kernel(self) -> int:
        """The attention's neighbourhood (its span), where stem code asks a layer's kernel."""
        return self.op.span or 1


StemLayer = Annotated[StemConv | StemPool | StemAttention, Field(discriminator="kind")]


class BlockDefaults(_Node):
    """``block bottleneck expansion 4 { ... }``: defaults for every block of the space.

    ``type``: ``bottleneck`` (1x1 reduce, spatial operator, 1x1 expand) or ``basic`` (two spatial
    layers, ``in -> width`` with the stride then ``width -> out``, both the block's one chosen
    operator: torchvision's BasicBlock when that is ``conv(kernel=3)`` at full width).
    """

    type: Literal["bottleneck", "basic"] = "bottleneck"
    expansion: int = 4
    spec: BlockSpec = BlockSpec()

    @model_validator(mode="before")
    @classmethod
    def _default_expansion(cls, data: Any) -> Any:
        """No expansion given: the type's (4 for bottleneck, 1 for basic)."""
        if isinstance(data, dict) and data.get("expansion") is None and data.get("type") in DEFAULT_EXPANSION:
            data = {**data, "expansion": DEFAULT_EXPANSION[data["type"]]}
        return data


class BlockOverride(_Node):
    """``block 0 { op axial; heads 8 }`` inside a stage."""

    index: int
    spec: BlockSpec


class Stage(_Node):
    """``stage s2 blocks 4 width 128 stride 2 { ... }``.

    ``depths``: elastic depth (``blocks 2 | 3 | 4``, ``blocks 2..4``), the stage's depth choices as
    written (None: fixed at ``blocks``). ``blocks`` is then the largest: a sub-network of depth ``d``
    keeps the stage's first ``d`` blocks (Once-for-All), so the supernet holds ``blocks`` of them.
    """

    name: str
    blocks: int
    width: int
    stride: int = 1
    expansion: int | None = None
    spec: BlockSpec = BlockSpec()
    overrides: tuple[BlockOverride, ...] = ()
    depths: tuple[int, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _depths(cls, data: Any) -> Any:
        """``blocks`` defaults to the largest depth choice; one choice is a fixed depth (None)."""
        if not isinstance(data, dict) or not data.get("depths"):
            return data
        data = dict(data)
        depths = tuple(data["depths"])
        if data.get("blocks") is None and all(isinstance(d, int) for d in depths):
            data["blocks"] = max(depths)
        if len(set(depths)) == 1 and data.get("blocks") == depths[0]:
            depths = ()
        data["depths"] = depths or None
        return data

    @model_validator(mode="after")
    def _depths_match(self) -> Stage:
        if self.depths is not None and max(self.depths) != self.blocks:
            raise ValueError(f"stage {self.name}: blocks {self.blocks} is not the largest depth choice {self.depths}")
        return self

    @property
    def depth_choices(self) -> tuple[int, ...]:
        """The depths a sub-network may have, ascending (``(blocks,)`` for a fixed stage)."""
        return tuple(sorted(set(self.depths))) if self.depths else (self.blocks,)


class InputShape(_Node):
    channels: int
    height: int
    width: int


class Space(_Node):
    """A search space: a residual backbone whose blocks' spatial operators are choices."""

    name: str
    input: InputShape
    classes: int
    stem: tuple[StemLayer, ...] = ()
    block: BlockDefaults = BlockDefaults()
    stages: tuple[Stage, ...]
    comments: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    trailing: dict[str, str] = Field(default_factory=dict)

    def __hash__(self) -> int:  # dict field: hash the canonical identity instead
        return hash((self.name, self.stages))


class ArchBlock(_Node):
    """``s1.1 local(span=7) width 48 heads 8``: one block of a space, fixed."""

    stage: str
    index: int
    op: Op
    width: int
    heads: int | None = None

    @property
    def key(self) -> str:
        return f"{self.stage}.{self.index}"


class Arch(_Node):
    """One point of a space: every block's operator, width and heads fixed.

    ``depths``: stage name -> depth (``s3 depth 4`` in the file) for stages of elastic depth; a
    stage not named has its full depth. Blocks past a stage's depth are not listed.
    """

    name: str
    space: str
    blocks: tuple[ArchBlock, ...]
    depths: dict[str, int] = Field(default_factory=dict)
    comments: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    trailing: dict[str, str] = Field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.name, self.space, self.blocks))

    def block(self, key: str) -> ArchBlock:
        for b in self.blocks:
            if b.key == key:
                return b
        raise KeyError(key)


Document = Space | Arch

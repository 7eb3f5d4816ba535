"""The operator registry: every spatial operator a block may choose, declared once.

An :class:`Operator` is everything the pipeline knows about one operator kind:

* **language** — its DSL name and arguments (:class:`Arg`: one integer each, with a default
  or none), and whether it is an attention operator (``attention=True``: it takes
  ``heads``, from ``heads=`` in its parentheses or the block's ``heads`` statement);
* **validation** — size arguments declared ``odd`` must be odd; an attention operator
  needs head choices and every head count must divide every width of its block; ``check``
  adds operator-specific rules. The parser checks arguments, :func:`trionet_dsl.space.resolve`
  the rest (located errors either way);
* **costs** — ``params``/``macs`` of the plain operator and ``super_params``/``output_rows``
  of the supernet's operator: plain, torch-free Python functions (the built-ins' are in
  :mod:`trionet_dsl.space.op_costs`);
* **modules** — ``plain_module`` (the standalone layer of one size) and ``super_module``
  (every width and head count of a block in one set of weights; ``forward(x, width, heads)``,
  ``output_rows``, ``output_index(width, heads)``, ``extract(width, heads)``; the built-ins'
  are in :mod:`trionet_dsl.nn.ops.factory`).

**Stages.** The registry is read by the parser and the emitter, so it lives in ``lang/``, the
first stage; its costs and modules live in later stages (``space/``, ``nn/``), which ``lang``
may not import. So they are *references*: a callable, or a ``"module:attribute"`` string
imported on first use (:func:`load_ref`). Importing this module imports neither the space nor
the nn stage, nor torch; the cost model only ever loads the cost functions (torch-free), the
supernet loads the modules. A registration from outside the package may pass callables
directly (see ``tests/test_operator_registry.py``).

**Registration.** :data:`REGISTRY` is the one registry every stage reads, holding the
built-in ``conv``, ``local``, ``axial`` and ``global``. ``REGISTRY.register(op)`` adds an operator and
returns a :class:`Registration` whose ``remove()`` takes it out again (it is also a context
manager); ``with REGISTRY.extended(op, ...):`` adds operators for the ``with`` body only.
Nothing else in the package changes the registry, so an extension never outlives the code
that made it (tests use ``extended`` and leak nothing into each other).

Calling conventions (keyword arguments; ``op`` is the :class:`trionet_dsl.lang.ir.Op`, whose
``op.arg(name)`` gives an argument's value; ``heads`` is ``None``/``()`` for an operator
without heads; ``in_hw`` is the operator's input (height, width); a bottleneck's operator has
``width`` channels in and out)::

    params(op, *, width, heads, in_hw[, in_channels]) -> int
    macs(op, *, width, heads, in_hw, stride[, in_channels]) -> int       # multiply-adds
    super_params(op, *, widths, heads, in_hw, sharing[, in_max]) -> int  # heads: the tuple of choices
    output_rows(op, *, widths, heads, sharing) -> int                    # outputs the BN after it stores
    plain_module(op, *, width, heads, in_hw, stride[, in_channels]) -> torch.nn.Module
    super_module(op, *, in_max, widths, heads, in_hw, stride, sharing) -> torch.nn.Module
    check(op, *, widths, heads[, in_hw]) -> str | (str, str) | None      # an error (and hint), or None

``in_channels``/``in_max`` are passed only when the operator's input differs from its width: in a
``basic`` block (two spatial layers, ``in -> width`` then ``width -> out``). An operator whose
functions do not take them works in bottlenecks only. ``check`` is called with every channel count
the operator's layers see (a basic block's input and output channels too).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trionet_dsl.lang.keywords import BLOCK_TYPES, STATEMENT_WORDS

if TYPE_CHECKING:
    from trionet_dsl.lang.ir import Op

Ref = str | Callable[..., Any]
"""A callable, or ``"package.module:attribute"`` naming one (imported on first use)."""

# "conv" is a stem layer and also the built-in conv operator: the one statement word an operator may take
RESERVED = frozenset(w for w in STATEMENT_WORDS + BLOCK_TYPES + ("kind", "args") if w != "conv")
"""Words an operator or argument may not be named (keywords of the language, IR field names)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@functools.cache
def _import(ref: str) -> Callable[..., Any]:
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"a reference is 'package.module:attribute', not {ref!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def head_count(heads: int | None) -> int:
    """``heads`` of an attention operator's sub-operator (a ValueError when it is missing)."""
    if heads is None:
        raise ValueError("an attention operator needs a head count")
    return heads


def _takes(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` accepts keyword ``name`` (a check written before ``in_hw`` existed does not)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def load_ref(ref: Ref) -> Callable[..., Any]:
    """The callable ``ref`` names (imported once, on first use)."""
    return ref if callable(ref) else _import(ref)


def _given(**kwargs: object) -> dict[str, object]:
    """The keyword arguments that are not None: optional ones are passed on only when given, so an
    operator plug-in written before they existed still accepts the call."""
    return {k: v for k, v in kwargs.items() if v is not None}


@dataclass(frozen=True)
class Arg:
    """One argument of an operator: ``kernel=3``. ``default=None``: optional, absent unless written."""

    name: str
    default: int | None = None
    odd: bool = False
    """A size: must be odd (``kernels and spans must be odd``)."""
    help: str = ""


@dataclass(frozen=True)
class Operator:
    """One operator kind, declared once (see the module docstring for each part's signature)."""

    name: str
    params: Ref
    macs: Ref
    super_params: Ref
    plain_module: Ref
    super_module: Ref
    args: tuple[Arg, ...] = ()
    attention: bool = False
    output_rows: Ref = "trionet_dsl.space.sharing:output_rows"
    check: Ref | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name in RESERVED:
            raise ValueError(
                f"{self.name!r} cannot name an operator: use a name (letters, digits, '_') "
                "that is not a keyword of the language"
            )
        names = [a.name for a in self.args]
        for a in self.args:
            if not _NAME.match(a.name) or a.name in RESERVED:
                raise ValueError(f"operator {self.name!r}: {a.name!r} cannot name an argument")
            if names.count(a.name) > 1:
                raise ValueError(f"operator {self.name!r}: argument {a.name!r} declared twice")
            if a.default is not None and (a.default < 1 or (a.odd and a.default % 2 == 0)):
                raise ValueError(f"operator {self.name!r}: default {a.name}={a.default} breaks its own rule")

    # -- language
    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args)

    @property
    def keywords(self) -> tuple[str, ...]:
        """What may be written in its parentheses: its arguments, and ``heads`` for attention."""
        return self.arg_names + (("heads",) if self.attention else ())

    def normalise(self, given: Mapping[str, int | None]) -> tuple[tuple[str, int], ...]:
        """Arguments in declared order with defaults filled; unknown names are a ValueError."""
        for key in given:
            if key not in self.arg_names:
                raise ValueError(
                    f"operator {self.name!r} has no argument {key!r}; its arguments: "
                    f"{', '.join(self.arg_names) or '(none)'}"
                )
        out = []
        for a in self.args:
            value = given.get(a.name)
            if value is None:
                value = a.default
            if value is not None:
                out.append((a.name, int(value)))
        return tuple(out)

    def validate(
        self, op: Op, *, widths: tuple[int, ...], heads: tuple[int, ...], in_hw: tuple[int, int] | None = None
    ) -> tuple[str, str | None] | None:
        """The operator's own rule (``check``) for ``op`` in a block: None when it holds, else
        (message, hint). ``in_hw`` (the block's input size) is passed to a check that takes it."""
        if self.check is None:
            return None
        check = load_ref(self.check)
        kwargs: dict[str, Any] = {"widths": widths, "heads": heads}
        if in_hw is not None and _takes(check, "in_hw"):
            kwargs["in_hw"] = in_hw
        problem = check(op, **kwargs)
        if problem is None or isinstance(problem, str):
            return None if not problem else (problem, None)
        message, hint = problem
        return str(message), None if hint is None else str(hint)

    # -- costs (torch-free)
    def count_params(
        self, op: Op, *, width: int, heads: int | None, in_hw: tuple[int, int], in_channels: int | None = None
    ) -> int:
        extra = _given(in_channels=in_channels)
        return int(load_ref(self.params)(op, width=width, heads=heads, in_hw=in_hw, **extra))

    def count_macs(
        self,
        op: Op,
        *,
        width: int,
        heads: int | None,
        in_hw: tuple[int, int],
        stride: int,
        in_channels: int | None = None,
    ) -> int:
        extra = _given(in_channels=in_channels)
        return int(load_ref(self.macs)(op, width=width, heads=heads, in_hw=in_hw, stride=stride, **extra))

    def count_super_params(
        self,
        op: Op,
        *,
        widths: tuple[int, ...],
        heads: tuple[int, ...],
        in_hw: tuple[int, int],
        sharing: str,
        in_max: int | None = None,
    ) -> int:
        extra = _given(in_max=in_max)
        return int(load_ref(self.super_params)(op, widths=widths, heads=heads, in_hw=in_hw, sharing=sharing, **extra))

    def count_output_rows(self, op: Op, *, widths: tuple[int, ...], heads: tuple[int, ...], sharing: str) -> int:
        return int(load_ref(self.output_rows)(op, widths=widths, heads=heads, sharing=sharing))

    # -- modules (torch)
    def make_plain(
        self,
        op: Op,
        *,
        width: int,
        heads: int | None,
        in_hw: tuple[int, int],
        stride: int,
        in_channels: int | None = None,
    ) -> Any:
        extra = _given(in_channels=in_channels)
        return load_ref(self.plain_module)(op, width=width, heads=heads, in_hw=in_hw, stride=stride, **extra)

    def make_super(
        self,
        op: Op,
        *,
        in_max: int,
        widths: tuple[int, ...],
        heads: tuple[int, ...],
        in_hw: tuple[int, int],
        stride: int,
        sharing: str,
    ) -> Any:
        return load_ref(self.super_module)(
            op, in_max=in_max, widths=widths, heads=heads, in_hw=in_hw, stride=stride, sharing=sharing
        )


class Registration:
    """The handle :meth:`Registry.register` returns: ``remove()`` (or leaving ``with``) unregisters."""

    def __init__(self, registry: Registry, operator: Operator) -> None:
        self.registry, self.operator = registry, operator

    def remove(self) -> None:
        if self.registry._ops.get(self.operator.name) is self.operator:
            del self.registry._ops[self.operator.name]

    def __enter__(self) -> Operator:
        return self.operator

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Registry:
    """Operators by name, in registration order (the order hints and listings show)."""

    def __init__(self, operators: Iterable[Operator] = ()) -> None:
        self._ops: dict[str, Operator] = {}
        for op in operators:
            self.register(op)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._ops)

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[Operator]:
        return iter(tuple(self._ops.values()))

    def __len__(self) -> int:
        return len(self._ops)

    def get(self, name: str) -> Operator | None:
        return self._ops.get(name)

    def __getitem__(self, name: str) -> Operator:
        try:
            return self._ops[name]
        except KeyError:
            raise KeyError(f"unknown operator {name!r}; registered operators: {', '.join(self._ops)}") from None

    def register(self, operator: Operator) -> Registration:
        """Add ``operator``; its name must be new. Returns the handle that removes it."""
        if not isinstance(operator, Operator):
            raise TypeError(f"register an Operator, not {type(operator).__name__}")
        if operator.name in self._ops:
            raise ValueError(f"operator {operator.name!r} is already registered")
        self._ops[operator.name] = operator
        return Registration(self, operator)

    @contextmanager
    def extended(self, *operators: Operator) -> Iterator[Registry]:
        """``with REGISTRY.extended(op, ...):`` — the operators exist for the body only."""
        handles: list[Registration] = []
        try:
            for op in operators:
                handles.append(self.register(op))
            yield self
        finally:
            for h in reversed(handles):
                h.remove()


_COSTS = "trionet_dsl.space.op_costs"
_MODULES = "trionet_dsl.nn.ops.factory"

BUILTINS: tuple[Operator, ...] = (
    Operator(
        "conv",
        args=(
            Arg("kernel", 3, odd=True, help="kernel size K (a K x K conv)"),
            Arg("groups", None, help="G groups (ResNeXt); every width must be divisible by G (absent: 1)"),
        ),
        params=f"{_COSTS}:conv_params",
        macs=f"{_COSTS}:conv_macs",
        super_params=f"{_COSTS}:conv_super_params",
        plain_module=f"{_MODULES}:conv_plain",
        super_module=f"{_MODULES}:conv_super",
        check=f"{_COSTS}:conv_check",
        help="K x K convolution (no bias), optionally grouped",
    ),
    Operator(
        "local",
        args=(Arg("span", 7, odd=True, help="neighbourhood size K (K x K)"),),
        attention=True,
        params=f"{_COSTS}:local_params",
        macs=f"{_COSTS}:local_macs",
        super_params=f"{_COSTS}:local_super_params",
        plain_module=f"{_MODULES}:local_plain",
        super_module=f"{_MODULES}:local_super",
        help="SASA local self-attention over a K x K neighbourhood, relative positions",
    ),
    Operator(
        "axial",
        args=(
            Arg("span", None, odd=True, help="attention span per axis (absent: global)"),
            Arg("qk_ratio", None, help="q/k channels = v channels / R (Axial-DeepLab: 2; absent: 1)"),
            Arg("shared_pos", None, help="=1: one positional embedding for all heads (absent: per head)"),
            Arg("bn", None, help="=1: BN on q/k/v, the logit terms and the outputs (Axial-DeepLab)"),
        ),
        attention=True,
        check=f"{_COSTS}:axial_check",
        params=f"{_COSTS}:axial_params",
        macs=f"{_COSTS}:axial_macs",
        super_params=f"{_COSTS}:axial_super_params",
        plain_module=f"{_MODULES}:axial_plain",
        super_module=f"{_MODULES}:axial_super",
        help="Axial-DeepLab axial self-attention (height then width), global unless a span is given",
    ),
    Operator(
        "global",
        args=(Arg("max_mib", None, help="cap on the attention logits per image, MiB (absent: 64)"),),
        attention=True,
        params=f"{_COSTS}:global_params",
        macs=f"{_COSTS}:global_macs",
        super_params=f"{_COSTS}:global_super_params",
        plain_module=f"{_MODULES}:global_plain",
        super_module=f"{_MODULES}:global_super",
        check=f"{_COSTS}:global_check",
        help="BoTNet all-to-all multi-head self-attention with 2-D relative positions (stride: avg pool)",
    ),
)

REGISTRY = Registry(BUILTINS)
"""The registry every stage reads (see the module docstring for extending it)."""


def operator(kind: str) -> Operator:
    """The registered operator ``kind``; KeyError naming the registered ones otherwise."""
    return REGISTRY[kind]

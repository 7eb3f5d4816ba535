"""``--compile``: ``torch.compile`` for the networks whose shapes stay fixed.

Compiling costs a trace and code generation per network and input shape, then runs every later
call of that shape faster, or not. It can pay where one fixed network runs many times:

* ``trionet train ARCH`` and ``trionet rank``'s stand-alone trainings: one graph for the whole
  run (training batches drop the incomplete last one, so the shape never changes);
* one-shot evaluation in ``trionet search`` / ``trionet rank``: each arch's validation pass runs
  on its extracted sub-network, whose shapes are fixed. It pays only when an arch's validation
  split takes longer than its compile: every arch is a new graph (an arch seen before in the
  process reuses its graph). BN recalibration stays eager, on the supernet.

Where it does not pay:

* supernet training, refused: every step activates another sub-network, and dynamo traces new
  graphs for each one. Measured on ``tests/data/tiny.space`` (default sampling and distillation,
  backend eager): 30 steps drew 30 distinct sub-networks; 16 graphs by step 5 (the sliced convs'
  data-dependent index reads break each forward into pieces), then dynamo's limit of 8 graphs per
  function ran the rest eagerly; with the limit lifted, dynamo failed tracing the index cache;
* a compile costs 10-60 s per network on the 2-core CPU it was measured on (idle; inductor,
  ``benchmarks/compile_speedup.py``, ``trionet_small``): one-shot validation then ran x1.85 (all-conv),
  x1.75 (all-axial), x1.05 (all-local), training steps x1.23, x1.55 and x0.93. Search's 2 validation
  batches per arch never win a compile back; a long fixed-arch training of conv or axial does, after
  3,000-6,000 steps. Local attention's offset loop is one custom op under compile (see
  ``nn.ops.local_attention``), so it is neither unrolled nor sped up.

The weights stay the eager module's: a checkpoint saves the uncompiled module's ``state_dict``
(compiled modules prefix every key with ``_orig_mod.``), so compiled and eager runs resume each
other. A data-parallel run compiles the DDP-wrapped module (2 gloo processes, backend aot_eager:
one graph, the same weights as eager). ``backend`` is a Python-only setting: tests use
``"eager"`` / ``"aot_eager"`` (dynamo's tracing without inductor's code generation).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from trionet_dsl.lang.errors import SpaceError

COMPILE_MODES: tuple[str, ...] = ("off", "default", "reduce-overhead", "max-autotune")
"""``--compile``'s values: off, or one of ``torch.compile``'s modes."""

_MANY = 1 << 20  # graphs a function may hold inside ``compile_scope``: no limit in practice


def check_compile_mode(mode: str) -> str:
    """Refuse an unknown ``--compile`` value in one line, before any work."""
    if mode not in COMPILE_MODES:
        raise SpaceError(f"unknown --compile '{mode}'", hint="use " + ", ".join(COMPILE_MODES))
    return mode


def compile_model(model: nn.Module, mode: str = "default", backend: str = "inductor") -> nn.Module:
    """``model`` compiled with ``torch.compile`` (``mode`` off: ``model`` itself). The result shares
    ``model``'s parameters and buffers; save ``model``'s ``state_dict``, not the result's."""
    if check_compile_mode(mode) == "off":
        return model
    compiled: nn.Module = torch.compile(model, mode=mode, backend=backend)  # type: ignore[assignment]
    return compiled


def refuse_supernet(mode: str, file: str) -> None:
    """Supernet training is not compiled (module docstring): a one-line refusal naming the space."""
    if check_compile_mode(mode) == "off":
        return
    raise SpaceError(
        f"--compile {mode} is for a fixed network: supernet training activates a different sub-network "
        "every step, so torch.compile would trace a new graph per step (and after 8 fall back to eager)",
        file=file,
        hint="drop --compile to train the supernet; use it for `trionet train ARCH`, search or rank",
    )


def compile_scope(mode: str) -> contextlib.AbstractContextManager[Any]:
    """The context compiled networks run in. Dynamo keeps at most 8 graphs per Python function and
    then silently runs it eagerly; ``TrioNet.forward`` gets one graph per distinct arch, so a job
    that compiles many archs (rank's trainings, one-shot evaluation) lifts that limit while it runs.
    Nothing when ``mode`` is off."""
    if check_compile_mode(mode) == "off":
        return contextlib.nullcontext()
    import torch._dynamo

    config: Any = torch._dynamo.config  # a config module whose settings mypy does not see
    return config.patch(recompile_limit=_MANY, accumulated_recompile_limit=_MANY)

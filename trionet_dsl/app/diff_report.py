"""The data behind ``trionet diff``: arch-vs-arch or space-vs-space, plus costs and accuracies."""

from __future__ import annotations

from pathlib import Path

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.space.counts import count_value
from trionet_dsl.space.diff import diff_archs, diff_spaces
from trionet_dsl.space.loader import LoadedArch, load_any
from trionet_dsl.space.resolve import ResolvedSpace


def _accuracy(histories: list[Path], arch_text_key: str) -> float | None:
    """Best accuracy any of the search histories logged for this arch."""
    from trionet_dsl.search.driver import read_history

    best = None
    for h in histories:
        if not Path(h).is_file():
            raise SpaceError(f"cannot read history {h}: no such file", hint="--history takes the .jsonl a search wrote")
        for rec in read_history(Path(h)):
            if rec.get("arch_key") == arch_text_key and rec.get("accuracy") is not None:
                best = rec["accuracy"] if best is None else max(best, rec["accuracy"])
    return best


def diff_report(a: Path, b: Path, space: Path | None = None, histories: list[Path] | None = None) -> dict:
    da, db = load_any(a, space), load_any(b, space)
    if isinstance(da, LoadedArch) and isinstance(db, LoadedArch):
        return _arch_report(da, db, histories)
    if isinstance(da, ResolvedSpace) and isinstance(db, ResolvedSpace):
        return _space_report(da, db)
    raise SpaceError("cannot diff an arch against a space", file=str(b), hint="give two .arch or two .space files")


def _arch_report(da: LoadedArch, db: LoadedArch, histories: list[Path] | None) -> dict:
    d = diff_archs(da.arch, db.arch)
    rep: dict = {
        "kind": "arch",
        "a": d.a,
        "b": d.b,
        "blocks": [c.model_dump() for c in d.blocks],
        "depths": [c.model_dump() for c in d.depths],
        "n_changed": len(d.changed),
        "n_equal": len(d.equal),
    }
    from trionet_dsl.space.cost import arch_cost

    ca, cb = arch_cost(da.space, da.arch), arch_cost(db.space, db.arch)
    rep["costs"] = {"params": {"a": ca.params, "b": cb.params}, "flops": {"a": ca.flops, "b": cb.flops}}
    if histories:
        from trionet_dsl.search.base import arch_key

        rep["costs"]["accuracy"] = {
            "a": _accuracy(histories, arch_key(da.arch)),
            "b": _accuracy(histories, arch_key(db.arch)),
        }
    return rep


def _space_report(da: ResolvedSpace, db: ResolvedSpace) -> dict:
    d = diff_spaces(da, db)
    rows = []
    for r in d.blocks:
        added = [
            *r.ops_added,
            *(f"w{w}" for w in r.widths_added),
            *(f"{k.split('(')[0]} h{h}" for k, v in r.heads_added.items() for h in v),
        ]
        removed = [
            *r.ops_removed,
            *(f"w{w}" for w in r.widths_removed),
            *(f"{k.split('(')[0]} h{h}" for k, v in r.heads_removed.items() for h in v),
        ]
        rows.append(r.model_dump() | {"added": ", ".join(added), "removed": ", ".join(removed)})
    return {
        "kind": "space",
        "a": d.a,
        "b": d.b,
        "header": d.header,
        "blocks": rows,
        "size_a": count_value(d.size_a),
        "size_b": count_value(d.size_b),
    }

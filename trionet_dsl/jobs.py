"""The user's jobs as Python functions (the CLI calls exactly these): train, search, export.

Each takes files and plain options, validates everything up front (so a typo fails in
a second, not after an hour of training) and returns a result object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from trionet_dsl.emit import emit_arch
from trionet_dsl.errors import SpaceError
from trionet_dsl.io import atomic_write_text
from trionet_dsl.loader import LoadedArch, load_any, load_arch
from trionet_dsl.semantics import ResolvedSpace

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_count(text: str | int | None, what: str = "value") -> int | None:
    """``300M`` -> 300_000_000; ``1.5G``; plain integers; None stays None."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)\s*", str(text))
    if not m:
        raise SpaceError(f"cannot read {what} '{text}'", hint="write a number with an optional K/M/G suffix, e.g. 300M")
    return int(round(float(m.group(1)) * _SUFFIX[m.group(2).upper()]))


def load_dataset(source: str, space: ResolvedSpace, val_fraction: float = 0.2, seed: int = 0,
                 val_source: str | None = None):
    """The data bundle for a space: images resized to its input, split and normalised."""
    from trionet_dsl.data import DataConfig, load_data

    i = space.space.input
    cfg = DataConfig(source=source, val_fraction=val_fraction, val_source=val_source,
                     image_size=(i.height, i.width), channels=i.channels, seed=seed)
    bundle = load_data(cfg)
    if bundle.num_classes > space.space.classes:
        raise SpaceError(f"the data has {bundle.num_classes} classes but space '{space.name}' has "
                         f"classes {space.space.classes}", hint=f"set 'classes {bundle.num_classes}' in the space")
    return bundle


def train_job(file: str | Path, data: str, cfg, out: str | Path, resume: bool = False, progress: bool = True,
              val_fraction: float = 0.2, space: str | Path | None = None, stop_after_epoch: int | None = None,
              val_data: str | None = None):
    """Train the supernet of a `.space` file, or an `.arch` from scratch."""
    from trionet_dsl.train import train

    target = load_any(file, space)
    rs = target if isinstance(target, ResolvedSpace) else target.space
    bundle = load_dataset(data, rs, val_fraction, cfg.seed, val_source=val_data)
    return train(target, bundle, cfg, out, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch)


@dataclass
class SearchOutcome:
    best: LoadedArch
    best_text: str
    accuracy: float | None
    params: int
    flops: int
    front: list[tuple[Path, float | None, int, int]]
    evaluated: int
    history: Path | None


def search_job(space_file: str | Path, checkpoint: str | Path | None, out: str | Path, data: str = "digits",
               strategy: str = "evolution", budget: int = 50, max_flops: str | int | None = None,
               max_params: str | int | None = None, evaluator: str = "supernet", seed: int = 0,
               history: str | Path | None = None, resume: bool = False, multi_objective: bool = False,
               bn_batches: int = 8, val_fraction: float = 0.2, progress: bool = True,
               strategy_options: dict | None = None, val_data: str | None = None) -> SearchOutcome:
    """Search a space under cost limits and write the best arch (and the Pareto front) as DSL."""
    from trionet_dsl.cost import CostModel
    from trionet_dsl.loader import load_space
    from trionet_dsl.search.base import Limits
    from trionet_dsl.search.driver import run_search
    from trionet_dsl.search.evaluators import CostOnlyEvaluator, SupernetEvaluator

    rs = load_space(space_file)
    limits = Limits(max_flops=parse_count(max_flops, "--max-flops"), max_params=parse_count(max_params, "--max-params"))
    cost = CostModel(rs)
    ext = cost.extremes()
    if limits.max_flops is not None and limits.max_flops < ext["flops_min"]:
        raise SpaceError(f"--max-flops {limits.max_flops:,} is below the smallest sub-network ({ext['flops_min']:,})",
                         hint="raise the limit; `trionet compile` prints the space's FLOPs range")
    if limits.max_params is not None and limits.max_params < ext["params_min"]:
        raise SpaceError(f"--max-params {limits.max_params:,} is below the smallest sub-network "
                         f"({ext['params_min']:,})", hint="raise the limit")
    objective = "accuracy"
    if evaluator == "supernet":
        if checkpoint is None:
            raise SpaceError("the supernet evaluator needs --checkpoint", hint="train first: trionet train SPACE --out run/")
        from trionet_dsl.checkpoint import load_checkpoint
        from trionet_dsl.emit import emit_space
        from trionet_dsl.supernet import Supernet

        ck = load_checkpoint(checkpoint)
        if ck.get("kind") != "supernet" or ck.get("space_text") != emit_space(rs.space):
            raise SpaceError(f"{checkpoint} is not a supernet of space '{rs.name}'", file=str(checkpoint),
                             hint="use the supernet.pt that `trionet train` wrote for this space")
        net = Supernet.from_checkpoint(ck, rs)
        bundle = load_dataset(data, rs, val_fraction, ck.get("config", {}).get("seed", seed), val_source=val_data)
        evaluate = SupernetEvaluator(net, bundle, bn_batches=bn_batches, seed=seed)
    elif evaluator in ("flops", "params"):
        evaluate = CostOnlyEvaluator(evaluator)
        objective = evaluator
    else:
        raise SpaceError(f"unknown evaluator '{evaluator}'", hint="use supernet, flops or params")
    if multi_objective and strategy == "tpe":
        strategy = "nsga2"
    out = Path(out)
    hist = Path(history) if history else out.with_suffix(".history.jsonl")
    res = run_search(rs, strategy, evaluate, cost, limits, budget, seed=seed, objective=objective,
                     history_path=hist, resume=resume, progress=progress, strategy_options=strategy_options)

    def write(obs, path: Path, name: str) -> Path:
        arch = obs.arch.model_copy(update={"name": name})
        acc = "n/a" if obs.accuracy is None else f"{obs.accuracy:.4f}"
        header = [f"searched by trionet-dsl: strategy {strategy}, seed {seed}, "
                  f"{len(res.history)} archs evaluated",
                  f"accuracy {acc} (one-shot, {evaluator}), FLOPs {obs.flops:,} (multiply-adds), "
                  f"params {obs.params:,}",
                  f"limits: max-flops {limits.max_flops or 'none'}, max-params {limits.max_params or 'none'}"]
        atomic_write_text(path, emit_arch(arch, header))
        return path

    name = re.sub(r"\W", "_", out.stem) or "best"
    write(res.best, out, name)
    front = []
    if multi_objective:
        fdir = out.with_suffix(".front")
        fdir.mkdir(parents=True, exist_ok=True)
        for k, o in enumerate(res.front):
            p = write(o, fdir / f"front_{k:02d}.arch", f"{name}_front_{k:02d}")
            front.append((p, o.accuracy, o.params, o.flops))
    best = load_arch(out, rs)
    return SearchOutcome(best, out.read_text(), res.best.accuracy, res.best.params, res.best.flops, front,
                         len(res.history), hist)


def export_job(arch_file: str | Path, out: str | Path, checkpoint: str | Path | None = None, fmt: str = "pt",
               fresh: bool = False, seed: int = 0, space: str | Path | None = None):
    """Export an arch as a standalone model with inherited (or fresh) weights."""
    from trionet_dsl.export import export, model_from_checkpoint

    la = load_arch(arch_file, space)
    if checkpoint is None and not fresh:
        raise SpaceError("export needs --checkpoint (inherit trained weights) or --fresh (new weights)")
    model = model_from_checkpoint(la, None if fresh else checkpoint, seed=seed)
    return export(model, la, out, fmt)  # type: ignore[arg-type]

"""``trionet search``: the best sub-network under cost limits, written back as DSL text.

Validates every option before any work (a typo fails in a second, not after an hour),
evaluates on the checkpoint's own validation split, and writes the winner (and the Pareto
front) with a provenance header that ``export`` reads back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trionet_dsl.app.datasets import checkpoint_data
from trionet_dsl.app.options import check_seed, check_val_fraction, parse_count, set_threads
from trionet_dsl.lang.emit import emit_arch
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write_text
from trionet_dsl.search.base import PREFIX_CACHE_MB, Observation
from trionet_dsl.space.loader import LoadedArch, load_arch
from trionet_dsl.train.config import ONE_SHOT_BN_BATCHES

if TYPE_CHECKING:
    from trionet_dsl.search.parallel import DistributedEvaluations


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
    data: str | None = None
    warnings: list[str] = field(default_factory=list)
    repeats: int = 0
    prefix_reuse: float | None = None  # share of block evaluations the one-shot prefix cache answered

    def as_dict(self) -> dict:
        return {
            "arch": str(self.best.path),
            "accuracy": self.accuracy,
            "params": self.params,
            "flops": self.flops,
            "evaluated": self.evaluated,
            "history": None if self.history is None else str(self.history),
            "data": self.data,
            "warnings": self.warnings,
            "repeats_answered": self.repeats,
            "prefix_reuse": self.prefix_reuse,
            "front": [{"arch": str(p), "accuracy": a, "params": prm, "flops": fl} for p, a, prm, fl in self.front],
        }


def _limits(rs, max_flops: str | int | None, max_params: str | int | None):
    """The cost limits, refused up front when no sub-network can meet them."""
    from trionet_dsl.search.base import Limits
    from trionet_dsl.space.cost import CostModel

    limits = Limits(max_flops=parse_count(max_flops, "--max-flops"), max_params=parse_count(max_params, "--max-params"))
    cost = CostModel(rs)
    ext = cost.extremes()
    if limits.max_flops is not None and limits.max_flops < ext["flops_min"]:
        raise SpaceError(
            f"--max-flops {limits.max_flops:,} is below the smallest sub-network ({ext['flops_min']:,})",
            hint="raise the limit; `trionet compile` prints the space's FLOPs range",
        )
    if limits.max_params is not None and limits.max_params < ext["params_min"]:
        raise SpaceError(
            f"--max-params {limits.max_params:,} is below the smallest sub-network ({ext['params_min']:,})",
            hint="raise the limit",
        )
    return limits, cost


def _evaluator(
    evaluator: str,
    rs,
    checkpoint: str | Path | None,
    bn_batches: int,
    data: str | None,
    val_fraction: float | None,
    val_data: str | None,
    force: bool,
    workers: int = 0,
    cache_mb: int = PREFIX_CACHE_MB,
    compile_mode: str = "off",
    compile_backend: str = "inductor",
):
    """(evaluate, objective, description of the evaluation data) for ``--evaluator``."""
    from trionet_dsl.search.evaluators import CostOnlyEvaluator, SupernetEvaluator

    if evaluator == "supernet":
        if checkpoint is None:
            raise SpaceError(
                "the supernet evaluator needs --checkpoint", hint="train first: trionet train SPACE --out run/"
            )
        from trionet_dsl.lang.emit import emit_space
        from trionet_dsl.train.checkpoint import load_checkpoint, require_space

        ck = load_checkpoint(checkpoint)
        require_space(ck, emit_space(rs.space), rs.name, checkpoint, kind="supernet")
        bundle, described = checkpoint_data(ck, rs, checkpoint, data, val_fraction, val_data, force, workers)
        assert bundle.config is not None  # checkpoint_data loads through load_data, which records the config
        # the same one-shot measure trionet rank validates (one constructor for both)
        ev = SupernetEvaluator.from_checkpoint(
            ck,
            rs,
            bundle,
            bn_batches,
            cache_bytes=cache_mb << 20,
            compile_mode=compile_mode,
            compile_backend=compile_backend,
        )
        return ev, "accuracy", described
    if evaluator in ("flops", "params"):
        return CostOnlyEvaluator(evaluator), evaluator, None
    if evaluator == "table":
        from trionet_dsl.search.tabular import TableEvaluator

        return TableEvaluator(rs, seed=0), "accuracy", "a synthetic accuracy table (seed 0; no training)"

    raise SpaceError(f"unknown evaluator '{evaluator}'", hint="use supernet, flops, params or table")


def _on_device(evaluate, device, precision: str):
    """The supernet evaluator on ``device``, its forward passes autocast to ``precision``
    (recalibration and evaluation follow the model's device)."""
    from trionet_dsl.train.device import autocast

    net = getattr(evaluate, "net", None)
    if net is None:  # cost-only evaluators compute nothing on a device
        return evaluate
    net.to(device)
    if precision == "fp32":
        return evaluate

    def in_precision(arch):
        with autocast(device, precision):
            return evaluate(arch)

    return in_precision


def _check_options(seed: int, budget: int, bn_batches: int, val_fraction: float | None, strategy: str) -> None:
    """Every option checked before anything is loaded: a typo fails in a second."""
    check_seed(seed)
    if budget < 1:
        raise SpaceError(
            f"--budget {budget}: the search must evaluate at least one architecture", hint="use --budget 1 or more"
        )
    if bn_batches < 1:
        raise SpaceError(
            f"--bn-batches {bn_batches}: BatchNorm recalibration needs at least one batch",
            hint="use the default 8 (0 would reset BN statistics and measure noise)",
        )
    if val_fraction is not None:
        check_val_fraction(val_fraction)
    if strategy in ("tpe", "nsga2"):
        from trionet_dsl.search.optuna_search import require_optuna

        require_optuna()  # before the checkpoint and data are loaded


def _write_arch(obs: Observation, path: Path, name: str, header: list[str], evaluator: str) -> Path:
    """One evaluated arch as DSL text, its provenance and measurements as header comments."""
    arch = obs.arch.model_copy(update={"name": name})
    acc = "n/a" if obs.accuracy is None else f"{obs.accuracy:.4f}"
    measured = f"accuracy {acc} (one-shot, {evaluator}), FLOPs {obs.flops:,} (multiply-adds), params {obs.params:,}"
    atomic_write_text(path, emit_arch(arch, [header[0], measured, *header[1:]]))
    return path


def search_job(
    space_file: str | Path,
    checkpoint: str | Path | None,
    out: str | Path,
    data: str | None = None,
    strategy: str = "evolution",
    budget: int = 50,
    max_flops: str | int | None = None,
    max_params: str | int | None = None,
    evaluator: str = "supernet",
    seed: int = 0,
    history: str | Path | None = None,
    resume: bool = False,
    multi_objective: bool = False,
    bn_batches: int = ONE_SHOT_BN_BATCHES,
    val_fraction: float | None = None,
    progress: bool = True,
    strategy_options: dict | None = None,
    val_data: str | None = None,
    force: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
    warn: Callable[[str], None] | None = None,
    batch: int | None = None,
    storage: str | None = None,
    study: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    tensorboard: str | Path | None = None,
    workers: int = 0,
    cache_mb: int = PREFIX_CACHE_MB,
    compile_mode: str = "off",
    compile_backend: str = "inductor",
) -> SearchOutcome:
    """Search a space under cost limits and write the best arch (and the Pareto front) as DSL.

    The supernet evaluator measures on the checkpoint's own validation split (see
    :func:`checkpoint_data`), BN recalibrated on ``bn_batches`` training batches; the
    arch's header says both, and ``export`` reproduces the number. ``batch`` proposals are
    asked at a time (default: one per process). ``storage``/``study`` (tpe, nsga2) make
    independent worker processes share one Optuna study; give each worker its own seed.
    ``tensorboard``: a folder for TensorBoard event files of the search's progress. ``cache_mb``:
    memory for the activations of recently evaluated prefixes, which one-shot evaluations of archs
    sharing them reuse (:mod:`trionet_dsl.search.prefix_cache`; the same accuracies; 0: off).
    ``compile_mode``/``compile_backend``: each arch's validation pass runs on its extracted sub-network
    compiled by ``torch.compile`` (the same accuracies; no prefix reuse then; a compile per arch, so
    it pays only when validation takes longer than that: :mod:`trionet_dsl.train.compiling`).

    Under torchrun (``torchrun --nproc_per_node=N -m trionet_dsl search ...``) every rank
    loads the same space, checkpoint and data; rank 0 runs the strategy and spreads each
    batch's evaluations over the ranks (:mod:`trionet_dsl.search.parallel`); only rank 0
    writes the history, the archs and the event files, and every rank returns the same
    outcome. The history, and so the result, depend on the seed and ``batch``, not on the
    number of processes.
    """
    from trionet_dsl.search.parallel import DistributedEvaluations, serve
    from trionet_dsl.space.loader import load_space
    from trionet_dsl.train import distributed as dd
    from trionet_dsl.train.compiling import check_compile_mode
    from trionet_dsl.train.device import check_precision

    set_threads(threads)
    _check_options(seed, budget, bn_batches, val_fraction, strategy)
    check_compile_mode(compile_mode)
    if batch is not None and batch < 1:
        raise SpaceError(f"--batch {batch}: ask at least one proposal at a time", hint="use --batch 1 or more")
    if study is not None and storage is None:
        raise SpaceError("--study needs --storage", hint="e.g. --storage sqlite:///study.db --study NAME")
    if storage is not None and strategy not in ("tpe", "nsga2") and not (multi_objective and strategy == "tpe"):
        raise SpaceError(
            f"--storage is for the Optuna strategies, not '{strategy}'", hint="use --strategy tpe or nsga2"
        )
    if storage is not None and resume:
        raise SpaceError(
            "--resume replays this worker's history, but the shared study in --storage is the search's state",
            hint="run the worker again without --resume (and --overwrite or a new --history): it continues the study",
        )
    if tensorboard is not None:
        from trionet_dsl.train.metric_sinks import require_tensorboard

        require_tensorboard()
    dev = _rank_device(device)
    check_precision(precision, dev)
    out = Path(out)
    if out.is_dir():
        raise SpaceError(f"--out {out} is a folder", hint=f"give a file name, e.g. {out / 'best.arch'}")
    rs = load_space(space_file)
    limits, cost = _limits(rs, max_flops, max_params)
    own_group = not _group_active()
    parallel = dd.init_from_env(backend="gloo")  # only pickled archs and results travel: gloo, even on GPUs
    cache = None
    bundle = None
    try:
        if cache_mb < 0:
            raise SpaceError(f"--cache-mb {cache_mb}: give 0 (off) or more", hint="e.g. --cache-mb 1024")
        evaluate, objective, described = _evaluator(
            evaluator,
            rs,
            checkpoint,
            bn_batches,
            data,
            val_fraction,
            val_data,
            force,
            workers,
            cache_mb,
            compile_mode,
            compile_backend,
        )
        cache = getattr(evaluate, "cache", None)
        bundle = getattr(evaluate, "data", None)  # a streamed bundle's DataLoader workers stop with the search
        evaluate = _on_device(evaluate, dev, precision)  # this rank's own GPU under torchrun
        if not dd.is_main():
            outcome: SearchOutcome = serve(evaluate)  # rank 0 closes with the outcome
            return outcome
        spread = DistributedEvaluations(evaluate) if parallel else None
        try:
            outcome = _search_on_rank0(
                rs,
                limits,
                cost,
                evaluate,
                objective,
                described,
                out,
                strategy=strategy,
                budget=budget,
                evaluator=evaluator,
                seed=seed,
                history=history,
                resume=resume,
                multi_objective=multi_objective,
                bn_batches=bn_batches,
                progress=progress,
                strategy_options=strategy_options,
                overwrite=overwrite,
                warn=warn,
                batch=dd.world() if batch is None else batch,
                storage=storage,
                study=study,
                precision=precision,
                tensorboard=tensorboard,
                spread=spread,
            )
        except BaseException as exc:
            if spread is not None:
                spread.close(error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise
        if spread is not None:
            spread.close(result=outcome)
        if cache is not None:  # this process's evaluations (rank 0's under torchrun)
            outcome.prefix_reuse = round(cache.reuse, 4)
        return outcome
    finally:
        if bundle is not None:
            bundle.close()
        if parallel and own_group:
            dd.cleanup()


def _group_active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _rank_device(device: str):
    """``--device``; under torchrun ``auto``/``cuda`` mean this rank's own GPU (``LOCAL_RANK``)."""
    import torch

    from trionet_dsl.train import distributed as dd
    from trionet_dsl.train.device import resolve_device

    dev = resolve_device(device)
    spread = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if spread and dev.type == "cuda" and device.strip().lower() in ("auto", "cuda"):
        return torch.device("cuda", dd.local_rank() % torch.cuda.device_count())
    return dev


def _search_on_rank0(
    rs,
    limits,
    cost,
    evaluate,
    objective: str,
    described: str | None,
    out: Path,
    *,
    strategy: str,
    budget: int,
    evaluator: str,
    seed: int,
    history: str | Path | None,
    resume: bool,
    multi_objective: bool,
    bn_batches: int,
    progress: bool,
    strategy_options: dict | None,
    overwrite: bool,
    warn: Callable[[str], None] | None,
    batch: int,
    storage: str | None,
    study: str | None,
    precision: str,
    tensorboard: str | Path | None,
    spread: DistributedEvaluations | None,
) -> SearchOutcome:
    """The strategy, the history and every file: rank 0's part (the whole job in one process)."""
    from trionet_dsl.search.driver import run_search
    from trionet_dsl.train.metric_sinks import tensorboard_sink

    if multi_objective and strategy == "tpe":
        strategy = "nsga2"
    options = dict(strategy_options or {})
    if strategy in ("tpe", "nsga2"):
        options.setdefault("multi_objective", multi_objective)
        if storage is not None:
            options.update(storage=storage, study=study)
    hist = Path(history) if history else out.with_suffix(".history.jsonl")
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        if warn is not None:
            warn(msg)

    world = 1 if spread is None else spread.world
    if batch < world:
        note(f"--batch {batch} under {world} processes: {world - batch} rank(s) wait idle; use --batch {world} or more")
    sink = tensorboard_sink(tensorboard)
    try:
        res = run_search(
            rs,
            strategy,
            evaluate,
            cost,
            limits,
            budget,
            seed=seed,
            objective=objective,
            history_path=hist,
            resume=resume,
            progress=progress,
            strategy_options=options,
            overwrite=overwrite,
            warn=note,
            batch=batch,
            evaluate_batch=spread,
            metrics=sink,
        )
    finally:
        if sink is not None:
            sink.close()

    header = [
        f"searched by trionet-dsl: strategy {strategy}, seed {seed}, "
        f"{len(res.history)} archs evaluated (accuracy ties -> fewer FLOPs, params, text order)",
        f"limits: max-flops {limits.max_flops or 'none'}, max-params {limits.max_params or 'none'}",
    ]
    if described and evaluator == "supernet":
        autocast_note = "" if precision == "fp32" else f", precision {precision}"  # export reads it back
        header.append(f"evaluated on {described}; BN recalibrated on {bn_batches} training batches{autocast_note}")
    elif described:
        header.append(f"evaluated on {described}")

    def write(obs: Observation, path: Path, name: str) -> Path:
        return _write_arch(obs, path, name, header, evaluator)

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
    return SearchOutcome(
        best,
        out.read_text(),
        res.best.accuracy,
        res.best.params,
        res.best.flops,
        front,
        len(res.history),
        hist,
        described,
        notes,
        res.repeats,
    )


search = search_job

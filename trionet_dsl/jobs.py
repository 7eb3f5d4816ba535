"""The user's jobs as Python functions (the CLI calls exactly these): train, search, export.

Each takes files and plain options, validates everything up front (so a typo fails in
a second, not after an hour of training) and returns a result object.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
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


def check_val_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise SpaceError(f"--val-fraction {val_fraction} is not a share of the data",
                         hint="use a number strictly between 0 and 1, e.g. 0.2 (or give --val FILE)")


def set_threads(threads: int | None) -> None:
    """``--threads N``: torch's intra-op threads (None: torch's default, one per core)."""
    if threads is None:
        return
    if threads < 1:
        raise SpaceError(f"--threads {threads} must be >= 1")
    import torch

    torch.set_num_threads(threads)


def load_dataset(source: str, space: ResolvedSpace, val_fraction: float = 0.2, seed: int = 0,
                 val_source: str | None = None):
    """The data bundle for a space: images resized to its input, split and normalised."""
    from trionet_dsl.data import DataConfig, load_data

    check_val_fraction(val_fraction)
    i = space.space.input
    cfg = DataConfig(source=source, val_fraction=val_fraction, val_source=val_source,
                     image_size=(i.height, i.width), channels=i.channels, seed=seed)
    bundle = load_data(cfg)
    if bundle.num_classes > space.space.classes:
        raise SpaceError(f"the data has {bundle.num_classes} classes but space '{space.name}' has "
                         f"classes {space.space.classes}", hint=f"set 'classes {bundle.num_classes}' in the space")
    return bundle


def checkpoint_data(ck: dict, space: ResolvedSpace, checkpoint: str | Path, data: str | None = None,
                    val_fraction: float | None = None, val_data: str | None = None, force: bool = False):
    """The data a checkpoint was trained on, split as in training (same fraction and seed).

    Search, export and rank evaluate on it by default. Options that name other data are
    refused unless ``force`` (another split would put training images into validation);
    returns ``(bundle, description)``.
    """
    from trionet_dsl.data import source_id

    rec = ck.get("data") or {}
    has_record = "seed" in rec and rec.get("source")
    if not has_record and data is None:
        raise SpaceError(f"{checkpoint} does not record the data it was trained on", file=str(checkpoint),
                         hint="pass --data (and --val-fraction / --val) as given to `trionet train`")
    seed = rec.get("seed", ck.get("config", {}).get("seed", 0))
    rec_fraction = rec.get("val_fraction") if has_record else None
    if has_record and not force:
        asked = {"--data": (source_id(data), rec["source"]) if data is not None else None,
                 "--val": (source_id(val_data), rec.get("val_source")) if val_data is not None else None,
                 "--val-fraction": (val_fraction, rec_fraction) if val_fraction is not None else None}
        for opt, pair in asked.items():
            if pair is not None and pair[0] != pair[1]:
                raise SpaceError(f"{opt} {pair[0]} differs from the checkpoint's training data ({opt} {pair[1]})",
                                 file=str(checkpoint),
                                 hint="leave it out to evaluate on the training run's validation split, or add "
                                      "--force to evaluate on other data")
    source = data if data is not None else rec["source"]
    vsource = val_data if val_data is not None else (rec.get("val_source") if has_record else None)
    fraction = val_fraction if val_fraction is not None else (rec_fraction or 0.2)
    from trionet_dsl.data.sources import NAMED_SOURCES

    if source not in NAMED_SOURCES and not Path(source).exists():
        raise SpaceError(f"the checkpoint's training data {source} is not there any more", file=str(checkpoint),
                         hint="pass --data PATH --force to evaluate on a copy of it")
    bundle = load_dataset(source, space, fraction, seed, val_source=vsource)
    split = f"--val {vsource}" if vsource else f"val-fraction {fraction}, split seed {seed}"
    return bundle, f"{source} ({split}): {len(bundle.val_y)} validation images"


def train_job(file: str | Path, data: str, cfg, out: str | Path, resume: bool = False, progress: bool = True,
              val_fraction: float = 0.2, space: str | Path | None = None, stop_after_epoch: int | None = None,
              val_data: str | None = None, threads: int | None = None):
    """Train the supernet of a `.space` file, or an `.arch` from scratch."""
    from trionet_dsl.train import check_out_dir, train

    set_threads(threads)
    check_out_dir(Path(out))
    check_val_fraction(val_fraction)
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
    data: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"arch": str(self.best.path), "accuracy": self.accuracy, "params": self.params, "flops": self.flops,
                "evaluated": self.evaluated, "history": None if self.history is None else str(self.history),
                "data": self.data, "warnings": self.warnings,
                "front": [{"arch": str(p), "accuracy": a, "params": prm, "flops": fl} for p, a, prm, fl in self.front]}


BN_HEADER = re.compile(r"BN recalibrated on (\d+) training batches")


def search_job(space_file: str | Path, checkpoint: str | Path | None, out: str | Path, data: str | None = None,
               strategy: str = "evolution", budget: int = 50, max_flops: str | int | None = None,
               max_params: str | int | None = None, evaluator: str = "supernet", seed: int = 0,
               history: str | Path | None = None, resume: bool = False, multi_objective: bool = False,
               bn_batches: int = 8, val_fraction: float | None = None, progress: bool = True,
               strategy_options: dict | None = None, val_data: str | None = None, force: bool = False,
               overwrite: bool = False, threads: int | None = None,
               warn: Callable[[str], None] | None = None) -> SearchOutcome:
    """Search a space under cost limits and write the best arch (and the Pareto front) as DSL.

    The supernet evaluator measures on the checkpoint's own validation split (see
    :func:`checkpoint_data`), BN recalibrated on ``bn_batches`` training batches; the
    arch's header says both, and ``export`` reproduces the number.
    """
    from trionet_dsl.cost import CostModel
    from trionet_dsl.loader import load_space
    from trionet_dsl.search.base import Limits
    from trionet_dsl.search.driver import run_search
    from trionet_dsl.search.evaluators import CostOnlyEvaluator, SupernetEvaluator

    set_threads(threads)
    if budget < 1:
        raise SpaceError(f"--budget {budget}: the search must evaluate at least one architecture",
                         hint="use --budget 1 or more")
    if bn_batches < 1:
        raise SpaceError(f"--bn-batches {bn_batches}: BatchNorm recalibration needs at least one batch",
                         hint="use the default 8 (0 would reset BN statistics and measure noise)")
    if val_fraction is not None:
        check_val_fraction(val_fraction)
    out = Path(out)
    if out.is_dir():
        raise SpaceError(f"--out {out} is a folder", hint=f"give a file name, e.g. {out / 'best.arch'}")
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
    described = None
    if evaluator == "supernet":
        if checkpoint is None:
            raise SpaceError("the supernet evaluator needs --checkpoint", hint="train first: trionet train SPACE --out run/")
        from trionet_dsl.checkpoint import load_checkpoint, require_space
        from trionet_dsl.emit import emit_space
        from trionet_dsl.supernet import Supernet

        ck = load_checkpoint(checkpoint)
        require_space(ck, emit_space(rs.space), rs.name, checkpoint, kind="supernet")
        net = Supernet.from_checkpoint(ck, rs)
        bundle, described = checkpoint_data(ck, rs, checkpoint, data, val_fraction, val_data, force)
        evaluate = SupernetEvaluator(net, bundle, bn_batches=bn_batches, seed=bundle.config.seed)
    elif evaluator in ("flops", "params"):
        evaluate = CostOnlyEvaluator(evaluator)
        objective = evaluator
    else:
        raise SpaceError(f"unknown evaluator '{evaluator}'", hint="use supernet, flops or params")
    if multi_objective and strategy == "tpe":
        strategy = "nsga2"
    hist = Path(history) if history else out.with_suffix(".history.jsonl")
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        if warn is not None:
            warn(msg)

    res = run_search(rs, strategy, evaluate, cost, limits, budget, seed=seed, objective=objective,
                     history_path=hist, resume=resume, progress=progress, strategy_options=strategy_options,
                     overwrite=overwrite, warn=note)

    def write(obs, path: Path, name: str) -> Path:
        arch = obs.arch.model_copy(update={"name": name})
        acc = "n/a" if obs.accuracy is None else f"{obs.accuracy:.4f}"
        header = [f"searched by trionet-dsl: strategy {strategy}, seed {seed}, "
                  f"{len(res.history)} archs evaluated (accuracy ties -> fewer FLOPs, params, text order)",
                  f"accuracy {acc} (one-shot, {evaluator}), FLOPs {obs.flops:,} (multiply-adds), "
                  f"params {obs.params:,}",
                  f"limits: max-flops {limits.max_flops or 'none'}, max-params {limits.max_params or 'none'}"]
        if described:
            header.append(f"evaluated on {described}; BN recalibrated on {bn_batches} training batches")
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
                         len(res.history), hist, described, notes)


def export_job(arch_file: str | Path, out: str | Path | None = None, checkpoint: str | Path | None = None,
               fmt: str | None = None, fresh: bool = False, seed: int = 0, space: str | Path | None = None,
               data: str | None = None, val_fraction: float | None = None, val_data: str | None = None,
               force: bool = False, recalibrate: bool = True, bn_batches: int | None = None,
               threads: int | None = None):
    """Export an arch as a standalone model with inherited (or fresh) weights, and measure the file.

    From a supernet, BN is recalibrated as the search evaluator did (``bn_batches`` from the
    arch's search header, else 8), so the file's validation accuracy equals the one-shot
    accuracy search reported for the arch.
    """
    from trionet_dsl.export import SUFFIX, export, file_accuracy, format_for, model_from_checkpoint
    from trionet_dsl.model import WithPreprocessing

    set_threads(threads)
    arch_path = Path(arch_file)
    fmt = format_for(Path(out) if out is not None else None, fmt)
    target = Path(out) if out is not None else arch_path.with_suffix(SUFFIX[fmt])
    if target.is_dir():
        raise SpaceError(f"--out {target} is a folder", hint=f"give a file name, e.g. {target / (arch_path.stem + SUFFIX[fmt])}")
    if checkpoint is None and not fresh:
        raise SpaceError("export needs --checkpoint (inherit trained weights) or --fresh (new weights)")
    if val_fraction is not None:
        check_val_fraction(val_fraction)
    la = load_arch(arch_file, space)
    if bn_batches is None:
        m = BN_HEADER.search(arch_path.read_text(errors="replace")) if arch_path.is_file() else None
        bn_batches = int(m.group(1)) if m else 8
    if bn_batches < 1:
        raise SpaceError(f"--bn-batches {bn_batches}: recalibration needs at least one batch",
                         hint="or pass --no-recalibrate to keep the supernet's statistics")
    bundle = described = None
    ck = None
    if not fresh:
        from trionet_dsl.checkpoint import load_checkpoint

        ck = load_checkpoint(checkpoint)  # type: ignore[arg-type]
        from trionet_dsl.checkpoint import require_space
        from trionet_dsl.emit import emit_space

        require_space(ck, emit_space(la.space.space), la.space.name, checkpoint)  # type: ignore[arg-type]
        bundle, described = checkpoint_data(ck, la.space, checkpoint, data, val_fraction, val_data, force)  # type: ignore[arg-type]
    elif data is not None:
        bundle = load_dataset(data, la.space, val_fraction or 0.2, seed, val_source=val_data)
        described = f"{data}: {len(bundle.val_y)} validation images"
    calib = None
    if ck is not None and ck.get("kind") == "supernet" and recalibrate:
        from trionet_dsl.train import calibration_batches

        calib = calibration_batches(bundle, bn_batches, 128, bundle.config.seed)
    model = model_from_checkpoint(la, ck if not fresh else None, seed=seed, calibration=calib)
    c = la.space.space.input.channels
    mean, std = (bundle.mean, bundle.std) if bundle is not None else ([0.0] * c, [1.0] * c)
    i = la.space.space.input
    meta = {"arch": la.arch.name, "space": la.space.name, "channels": i.channels, "height": i.height,
            "width": i.width, "mean": mean, "std": std, "scale": 255.0,
            "classes": bundle.class_names if bundle is not None else [str(k) for k in range(la.space.space.classes)],
            "bn": ("recalibrated on %d training batches" % bn_batches) if calib is not None else
                  ("supernet running statistics" if ck is not None and ck.get("kind") == "supernet" else "trained"),
            "data": described}
    wrapped = WithPreprocessing(model, mean, std).eval()
    if bundle is not None and bundle.val_raw is not None:
        from trionet_dsl.train import evaluate

        meta["val_accuracy"] = evaluate(wrapped, bundle.val_raw * 255.0, bundle.val_y, channels_last=False)
    res = export(wrapped, la, target, fmt, meta)  # type: ignore[arg-type]
    if bundle is not None and bundle.val_raw is not None:  # the written file itself, fed raw pixels
        res.accuracy = file_accuracy(res.path, fmt, bundle.val_raw * 255.0, bundle.val_y)
    return res

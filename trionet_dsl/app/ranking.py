"""``trionet rank``: does the supernet order sub-networks the way training them from scratch does?

Picks N sub-networks spread over the space's FLOPs range (plus the all-conv / all-local /
all-axial archs), measures each one's one-shot accuracy exactly as ``trionet search`` does
(inherited weights, BN recalibrated on the checkpoint's training batches, the checkpoint's
validation split), trains each from scratch with the recipe of ``trionet train ARCH`` on the
same split, and reports Kendall τ-b, Spearman ρ and top-k overlap between the two, each
with a seeded bootstrap 95% interval. With ``repeats >= 2`` each arch is trained with
several seeds: the mean seed-to-seed τ is the noise ceiling, the best τ any supernet could
show on this data.

Resumable: every finished stand-alone training is appended (fsynced) to
``out/results.jsonl`` and its model kept in ``out/archs/<k>/r<r>/``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from trionet_dsl.app.datasets import checkpoint_data
from trionet_dsl.app.options import check_seed, check_val_fraction, set_threads
from trionet_dsl.lang.emit import emit_arch, emit_space
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write, atomic_write_text
from trionet_dsl.lang.ir import Arch
from trionet_dsl.lang.operators import REGISTRY
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.space.sampling import sample, uniform_op
from trionet_dsl.train.config import ONE_SHOT_BN_BATCHES

if TYPE_CHECKING:
    from trionet_dsl.train.data import DataBundle

RESULTS = "results.jsonl"
PLAN = "plan.json"

# ----------------------------------------------------------------------------- statistics


def _signs(v: np.ndarray) -> np.ndarray:
    """Pairwise sign matrix: ``sign(v[i] - v[j])``."""
    return np.sign(v[:, None] - v[None, :])


def kendall_tau_b(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's τ-b (ties in either variable corrected); nan when either side is constant."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("kendall_tau_b needs two 1-D sequences of the same length")
    if len(a) < 2:
        return math.nan
    sx, sy = _signs(a), _signs(b)
    iu = np.triu_indices(len(a), 1)
    sx, sy = sx[iu], sy[iu]
    # concordant - discordant over sqrt(pairs untied in x * pairs untied in y)
    untied_x, untied_y = np.count_nonzero(sx), np.count_nonzero(sy)
    if untied_x == 0 or untied_y == 0:
        return math.nan
    return float(np.sum(sx * sy) / math.sqrt(untied_x * untied_y))


def average_ranks(v: ArrayLike) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of the ranks they span."""
    a = np.asarray(v, dtype=float)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a), dtype=float)
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and a[order[j + 1]] == a[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's ρ: the Pearson correlation of average ranks; nan when either side is constant."""
    rx, ry = average_ranks(x), average_ranks(y)
    if len(rx) != len(ry):
        raise ValueError("spearman_rho needs two sequences of the same length")
    dx, dy = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(np.sum(dx * dx) * np.sum(dy * dy)))
    return math.nan if den == 0 else float(np.sum(dx * dy) / den)


def top_k_overlap(x: ArrayLike, y: ArrayLike, k: int) -> float:
    """Share of the k best by ``x`` that are also among the k best by ``y`` (ties: earlier first)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k = max(1, min(k, len(a)))
    top_a = set(np.lexsort((np.arange(len(a)), -a))[:k].tolist())
    top_b = set(np.lexsort((np.arange(len(b)), -b))[:k].tolist())
    return len(top_a & top_b) / k


Stat = Callable[[np.ndarray, np.ndarray], float]


def bootstrap_interval(
    stat: Stat, x: ArrayLike, y: ArrayLike, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(x, y)``: archs resampled with replacement.

    Resamples where the statistic is undefined (every arch drawn tied) are left out;
    ``(nan, nan)`` when none is defined.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(resamples):
        idx = rng.integers(0, len(a), len(a))
        v = stat(a[idx], b[idx])
        if not math.isnan(v):
            vals.append(v)
    if not vals:
        return math.nan, math.nan
    lo, hi = np.quantile(vals, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def bootstrap_difference(
    stat: Stat,
    a: ArrayLike,
    b: ArrayLike,
    y: ArrayLike,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """``stat(a, y) - stat(b, y)`` with a paired percentile-bootstrap interval: both one-shot
    measures ``a`` and ``b`` are scored on the *same* resampled archs, so the interval is that of
    the difference (much narrower than two separate intervals when ``a`` and ``b`` agree)."""
    xa, xb, yy = (np.asarray(v, dtype=float) for v in (a, b, y))
    if not (xa.shape == xb.shape == yy.shape):
        raise ValueError("bootstrap_difference needs three sequences of the same length")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(resamples):
        idx = rng.integers(0, len(yy), len(yy))
        v = stat(xa[idx], yy[idx]) - stat(xb[idx], yy[idx])
        if not math.isnan(v):
            vals.append(v)
    point = stat(xa, yy) - stat(xb, yy)
    if not vals:
        return {"value": point, "ci95": [math.nan, math.nan]}
    lo, hi = np.quantile(vals, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"value": point, "ci95": [float(lo), float(hi)]}


def rank_statistics(oneshot: ArrayLike, standalone: ArrayLike, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """τ-b, ρ and top-k overlap (k = max(1, N // 4)), each with a bootstrap 95% interval."""
    x, y = np.asarray(oneshot, dtype=float), np.asarray(standalone, dtype=float)
    k = max(1, len(x) // 4)
    stats: dict[str, Stat] = {
        "kendall_tau": kendall_tau_b,
        "spearman_rho": spearman_rho,
        "top_k_overlap": lambda a, b: top_k_overlap(a, b, k),
    }
    out: dict[str, Any] = {"k": k, "resamples": resamples}
    for i, (name, fn) in enumerate(stats.items()):
        point = fn(x, y)
        lo, hi = bootstrap_interval(fn, x, y, resamples, seed + i)
        out[name] = {"value": point, "ci95": [lo, hi]}
    return out


def noise_ceiling(runs: Sequence[Sequence[float]]) -> float | None:
    """Mean τ-b over pairs of repeats (``runs[r][arch]``); None with fewer than two repeats."""
    if len(runs) < 2:
        return None
    taus = [kendall_tau_b(a, b) for a, b in itertools.combinations(runs, 2)]
    taus = [t for t in taus if not math.isnan(t)]
    return float(np.mean(taus)) if taus else math.nan


# ----------------------------------------------------------------------------- picking archs


def operator_mix(arch: Arch) -> str:
    """``all-conv`` / ``all-local`` / ``all-axial`` when every block has that operator, else ``mixed``."""
    kinds = {b.op.kind for b in arch.blocks}
    return f"all-{kinds.pop()}" if len(kinds) == 1 else "mixed"


@dataclass
class Picked:
    arch: Arch
    text: str
    params: int
    flops: int
    mix: str
    why: str  # "all-conv" ... or "FLOPs bin i"


def pick_archs(rs: ResolvedSpace, n: int, seed: int = 0, pool: int | None = None) -> list[Picked]:
    """N distinct sub-networks: the single-operator archs the space has, then the rest
    stratified by FLOPs (the range split into equal bins, one random arch per bin; a bin no
    sampled arch falls in borrows from the nearest bin that has a spare one)."""
    cost = CostModel(rs)
    chosen: list[Picked] = []
    seen: set[str] = set()

    def add(arch: Arch, why: str) -> None:
        text = emit_arch(arch)
        params, flops = cost(arch)
        chosen.append(Picked(arch, text, params, flops, operator_mix(arch), why))
        seen.add(_key(arch))

    for kind in REGISTRY.names:  # every registered operator the space offers in every block
        try:
            arch = uniform_op(rs, kind, largest=True)
        except (KeyError, ValueError):
            continue  # the space has no such operator in some block
        if len(chosen) < n and _key(arch) not in seen:
            add(arch, f"all-{kind}")
    m = n - len(chosen)
    if m <= 0:
        return _named(chosen)
    rng = random.Random(f"rank/{seed}")
    ext = cost.extremes()
    lo, hi = ext["flops_min"], ext["flops_max"]
    candidates: dict[str, tuple[Arch, int]] = {}
    for _ in range(pool or max(400, 60 * m)):
        a = sample(rs, rng)
        key = _key(a)
        if key not in seen and key not in candidates:
            candidates[key] = (a, cost(a)[1])
    if len(candidates) < m:
        raise SpaceError(
            f"--archs {n}: the space has only {len(candidates) + len(seen)} distinct sub-networks that could be drawn",
            hint="ask for fewer archs",
        )
    width = max(1, hi - lo) / m
    bins: list[list[tuple[Arch, int]]] = [[] for _ in range(m)]
    for a, f in candidates.values():
        bins[min(m - 1, int((f - lo) / width))].append((a, f))
    for b in bins:
        rng.shuffle(b)
    for i in range(m):
        # the bin itself, then its neighbours outwards (a spare arch nearest in FLOPs)
        for j in sorted(range(m), key=lambda j: (abs(j - i), j)):
            if bins[j]:
                a, _ = bins[j].pop()
                add(a, f"FLOPs bin {i + 1}/{m}")
                break
    return _named(chosen)


def _key(arch: Arch) -> str:
    return emit_arch(arch.model_copy(update={"name": "x"}))


def _named(chosen: list[Picked]) -> list[Picked]:
    out = []
    for k, p in enumerate(chosen):
        arch = p.arch.model_copy(update={"name": f"rank_{k:02d}"})
        out.append(Picked(arch, emit_arch(arch), p.params, p.flops, p.mix, p.why))
    return out


# ----------------------------------------------------------------------------- the job


@dataclass
class RankOutcome:
    out_dir: Path
    json_path: Path
    png_path: Path
    report: dict[str, Any]
    trained: int  # stand-alone trainings run by this call (the rest were resumed)
    data: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank_json": str(self.json_path),
            "rank_png": str(self.png_path),
            "trained_now": self.trained,
            "data": self.data,
            "statistics": self.report["statistics"],
            "noise_ceiling": self.report["noise_ceiling"],
            "warnings": self.warnings,
        }


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SpaceError(
            "trionet rank draws its plot with matplotlib", hint="pip install 'trionet-dsl[rank]'"
        ) from None


def saved_count(out_dir: str | Path) -> int:
    """Finished stand-alone trainings recorded in ``out_dir`` (what Ctrl-C leaves)."""
    return len(_read_results(Path(out_dir) / RESULTS))


def _read_results(path: Path) -> dict[tuple[int, int], dict[str, Any]]:
    done: dict[tuple[int, int], dict[str, Any]] = {}
    if not path.is_file():
        return done
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
            done[(int(rec["arch"]), int(rec["repeat"]))] = rec
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash: that training runs again
    return done


def _append_fsync(path: Path, rec: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SpaceError(f"--out {out} is a file, not a folder", hint="give a folder for the ranking run")
    started = (out / RESULTS).exists() or (out / PLAN).exists() or (out / "archs").exists()
    if started and not resume and not overwrite:
        raise SpaceError(
            f"--out {out} already holds a ranking run ({saved_count(out)} stand-alone training(s) saved)",
            hint="add --resume to continue it, --overwrite to start over, or give another --out",
        )
    if started and overwrite and not resume:
        shutil.rmtree(out / "archs", ignore_errors=True)
        for name in (RESULTS, PLAN, "rank.json", "rank.png"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def rank_job(
    space_file: str | Path,
    checkpoint: str | Path,
    out_dir: str | Path,
    archs: int = 12,
    epochs: int = 10,
    repeats: int = 1,
    seed: int = 0,
    data: str | None = None,
    val_fraction: float | None = None,
    val_data: str | None = None,
    force: bool = False,
    bn_batches: int = ONE_SHOT_BN_BATCHES,
    batch_size: int = 64,
    lr: float = 0.05,
    resamples: int = 1000,
    resume: bool = False,
    overwrite: bool = False,
    threads: int | None = None,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
    workers: int = 0,
    compile_mode: str = "off",
    compile_backend: str = "inductor",
) -> RankOutcome:
    """Rank correlation between one-shot and stand-alone accuracy; writes ``rank.json`` and ``rank.png``.

    Stand-alone training uses ``TrainConfig(epochs, batch_size, lr, seed=seed + repeat)``
    (``trionet train ARCH``'s recipe, its other defaults) on the checkpoint's own split; the
    stand-alone accuracy is the final epoch's validation accuracy (no pick of the best epoch
    on the validation data), averaged over repeats. ``compile_mode``/``compile_backend``: one-shot
    validation on compiled extracted sub-networks and compiled stand-alone training steps (a speed
    setting: not part of the run's settings, the same results; :mod:`trionet_dsl.train.compiling`).
    """
    from pydantic import ValidationError

    from trionet_dsl.search.evaluators import SupernetEvaluator
    from trionet_dsl.space.loader import load_space
    from trionet_dsl.train.checkpoint import load_checkpoint, require_space
    from trionet_dsl.train.compiling import check_compile_mode
    from trionet_dsl.train.config import TrainConfig

    set_threads(threads)
    check_seed(seed)
    check_compile_mode(compile_mode)
    if archs < 3:
        raise SpaceError(
            f"--archs {archs}: a rank correlation needs at least 3 architectures", hint="use --archs 8 or more"
        )
    if epochs < 1:
        raise SpaceError(f"--epochs {epochs}: each architecture must train at least one epoch")
    if repeats < 1:
        raise SpaceError(f"--repeats {repeats}: each architecture must train at least once")
    if bn_batches < 1:
        raise SpaceError(
            f"--bn-batches {bn_batches}: BatchNorm recalibration needs at least one batch", hint="use the default 8"
        )
    if resamples < 1:
        raise SpaceError(f"bootstrap resamples {resamples} must be >= 1")
    if val_fraction is not None:
        check_val_fraction(val_fraction)
    try:
        cfgs = [TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + r) for r in range(repeats)]
    except ValidationError as exc:
        e = exc.errors()[0]
        raise SpaceError(f"bad option --{str(e['loc'][0]).replace('_', '-')}: {e['msg']}") from None
    require_matplotlib()
    out = Path(out_dir)
    _prepare_out(out, resume, overwrite)

    rs = load_space(space_file)
    ck = load_checkpoint(checkpoint)
    space_text = emit_space(rs.space)
    require_space(ck, space_text, rs.name, checkpoint, kind="supernet")
    bundle, described = checkpoint_data(ck, rs, checkpoint, data, val_fraction, val_data, force, workers)
    assert bundle.config is not None  # checkpoint_data loads through load_data, which records the config
    if bundle.num_train // batch_size == 0:
        raise SpaceError(
            f"--batch-size {batch_size} is larger than the {bundle.num_train} training images",
            hint=f"use --batch-size {max(1, bundle.num_train)} or lower",
        )
    picked = pick_archs(rs, archs, seed)
    settings = {
        "space": rs.name,
        "space_sha": _sha(space_text),
        "checkpoint": str(Path(checkpoint).resolve()),
        "checkpoint_epoch": ck.get("epoch"),
        "data": described,
        "archs": archs,
        "epochs": epochs,
        "repeats": repeats,
        "seed": seed,
        "bn_batches": bn_batches,
        "batch_size": batch_size,
        "lr": lr,
        "standalone_config": cfgs[0].model_dump(mode="json") | {"seed": f"{seed} + repeat"},
        "standalone_accuracy": "final epoch's validation accuracy, mean over repeats",
        "oneshot": f"inherited weights, BN recalibrated on {bn_batches} training batches (as trionet search)",
        "bootstrap_resamples": resamples,
    }
    plan = {"settings": settings, "archs": [p.text for p in picked]}
    if (out / PLAN).is_file():
        old = json.loads((out / PLAN).read_text())
        if old != plan:
            diff = {k: (old.get("settings", {}).get(k), v) for k, v in settings.items() if old["settings"].get(k) != v}
            raise SpaceError(
                f"--resume with different settings than the run in {out}: {diff or 'other architectures'}",
                hint="use the same options as the interrupted run, or --overwrite to start over",
            )
    else:
        atomic_write_text(out / PLAN, json.dumps(plan, indent=1))

    evaluate = SupernetEvaluator.from_checkpoint(  # exactly trionet search's measure
        ck, rs, bundle, bn_batches, compile_mode=compile_mode, compile_backend=compile_backend
    )
    trained = _train_all(rs, picked, cfgs, bundle, out, evaluate, progress, compile_mode, compile_backend)
    report = _report(picked, cfgs, out, settings, resamples, seed, trained["oneshot"])
    json_path = atomic_write_text(out / "rank.json", json.dumps(report, indent=1))
    png_path = plot(report, out / "rank.png")
    notes: list[str] = []
    if len(picked) < 8:
        notes.append(f"only {len(picked)} archs: the intervals are wide; use --archs 16 or more for a real measure")
        if warn is not None:
            warn(notes[-1])
    return RankOutcome(out, json_path, png_path, report, trained["count"], described, notes)


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _train_all(
    rs: ResolvedSpace,
    picked: list[Picked],
    cfgs: list[Any],
    bundle: DataBundle,
    out: Path,
    evaluate: Callable[[Arch], dict[str, float]],
    progress: bool,
    compile_mode: str = "off",
    compile_backend: str = "inductor",
) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trionet_dsl.space.loader import LoadedArch
    from trionet_dsl.train import loop

    oneshot = [evaluate(p.arch)["accuracy"] for p in picked]
    done = _read_results(out / RESULTS)
    todo = [(k, r) for k in range(len(picked)) for r in range(len(cfgs)) if (k, r) not in done]
    count = 0
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("stand-alone training", total=len(picked) * len(cfgs), completed=len(done))
        for k, r in todo:
            p = picked[k]
            run_dir = out / "archs" / f"{k:02d}" / f"r{r}"
            bar.update(task, description=f"{p.arch.name} ({p.mix}) seed {cfgs[r].seed}")
            hist = loop.train(
                LoadedArch(rs, p.arch),
                bundle,
                cfgs[r],
                run_dir,
                resume=(run_dir / "model.pt").is_file(),  # an interrupted training continues its epochs
                progress=False,
                compile_mode=compile_mode,
                compile_backend=compile_backend,
            )
            rec = {
                "arch": k,
                "repeat": r,
                "seed": cfgs[r].seed,
                "val_acc": hist[-1].val_acc,
                "best_val_acc": max(h.val_acc for h in hist),
                "model": str(run_dir / "model.pt"),
            }
            _append_fsync(out / RESULTS, rec)
            count += 1
            bar.update(task, advance=1)
            if progress:
                bar.console.print(
                    f"{p.arch.name} ({p.mix}, {p.flops:,} FLOPs) seed {cfgs[r].seed}: stand-alone "
                    f"{rec['val_acc']:.4f}, one-shot {oneshot[k]:.4f}"
                )
    return {"oneshot": oneshot, "count": count}


def _report(
    picked: list[Picked],
    cfgs: list[Any],
    out: Path,
    settings: dict[str, Any],
    resamples: int,
    seed: int,
    oneshot: list[float],
) -> dict[str, Any]:
    done = _read_results(out / RESULTS)
    runs = [[done[(k, r)]["val_acc"] for k in range(len(picked))] for r in range(len(cfgs))]
    standalone = [float(np.mean([run[k] for run in runs])) for k in range(len(picked))]
    stats = rank_statistics(oneshot, standalone, resamples, seed)
    ceiling = noise_ceiling(runs)
    tau = stats["kendall_tau"]["value"]
    single = [t for t in (kendall_tau_b(oneshot, run) for run in runs) if not math.isnan(t)]
    noise: dict[str, Any] = {
        "seed_to_seed_tau": ceiling,
        "supernet_tau_fraction": None if not ceiling or math.isnan(tau) else tau / ceiling,
        # like for like with the ceiling: one-shot against one training run at a time
        "supernet_tau_vs_single_runs": float(np.mean(single)) if len(runs) > 1 and single else None,
    }
    return {
        "settings": settings,
        "statistics": stats,
        "noise_ceiling": noise,
        "archs": [
            {
                "index": k,
                "name": p.arch.name,
                "why": p.why,
                "operators": p.mix,
                "text": p.text,
                "params": p.params,
                "flops": p.flops,
                "oneshot_acc": oneshot[k],
                "standalone_acc": standalone[k],
                "standalone_runs": [run[k] for run in runs],
            }
            for k, p in enumerate(picked)
        ],
    }


MARKERS = {"all-conv": "s", "all-local": "^", "all-axial": "D", "mixed": "o"}


def plot(report: dict[str, Any], path: Path) -> Path:
    """Scatter of one-shot vs stand-alone accuracy, one marker per operator mix (PNG, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    try:
        for mix, marker in MARKERS.items():
            rows = [a for a in report["archs"] if a["operators"] == mix]
            if rows:
                ax.scatter(
                    [a["oneshot_acc"] for a in rows],
                    [a["standalone_acc"] for a in rows],
                    marker=marker,
                    s=50 if mix == "mixed" else 80,
                    label=f"{mix} ({len(rows)})",
                    alpha=0.85,
                )
        st = report["statistics"]
        title = (
            f"τ {st['kendall_tau']['value']:.2f}  ρ {st['spearman_rho']['value']:.2f}  "
            f"top-{st['k']} {st['top_k_overlap']['value']:.2f}"
        )
        ceiling = report["noise_ceiling"]["seed_to_seed_tau"]
        if ceiling is not None:
            title += f"  (seed-to-seed τ {ceiling:.2f})"
        s = report["settings"]
        ax.set_title(f"{s['space']}: {len(report['archs'])} archs, {s['epochs']} epoch(s)\n{title}", fontsize=10)
        ax.set_xlabel("one-shot accuracy (inherited weights, BN recalibrated)")
        ax.set_ylabel(f"stand-alone accuracy (mean of {s['repeats']} run(s))")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
    return path


rank = rank_job

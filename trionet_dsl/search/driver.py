"""The search loop: ask, check limits, evaluate, tell, log — resumable from its history.

History is JSON lines, one evaluated arch per line, appended and fsynced as it goes.
``resume`` replays the history through a fresh strategy with the same seed (each
replayed proposal must match the logged one), so a resumed search ends exactly where an
uninterrupted one would.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write_text
from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.base import Limits, Observation, SearchStrategy, arch_key
from trionet_dsl.search.registry import make_strategy
from trionet_dsl.space.cost import CostModel
from trionet_dsl.space.resolve import ResolvedSpace

if TYPE_CHECKING:
    from trionet_dsl.train.metric_sinks import MetricsSink


@dataclass
class SearchResult:
    """``history``: this run's evaluations, in order (no arch twice); ``repeats``: proposals
    answered from the history instead of evaluated; ``stopped``: why the search ended before
    its budget (None when it spent it). ``best``/``front`` also cover results a shared
    study's other workers found (``SearchStrategy.shared_observations``)."""

    best: Observation
    front: list[Observation]
    history: list[Observation]
    objective: str
    repeats: int = 0
    stopped: str | None = None


def pareto_front(obs: list[Observation]) -> list[Observation]:
    """Non-dominated observations: higher accuracy, fewer FLOPs; sorted by FLOPs."""
    front: list[Observation] = []
    for o in obs:
        a, f = o.objective("accuracy"), o.flops
        dominated = any(
            (p.objective("accuracy") >= a and p.flops <= f) and (p.objective("accuracy") > a or p.flops < f)
            for p in obs
        )
        if not dominated and all(arch_key(o.arch) != arch_key(q.arch) for q in front):
            front.append(o)
    return sorted(front, key=lambda o: o.flops)


def hypervolume(front: list[Observation], ref_flops: int) -> float:
    """The share of the (FLOPs in [0, ref_flops]) x (accuracy in [0, 1]) box that ``front``
    dominates: 1 would be accuracy 1 at no cost. Grows whenever the front improves, so one
    number follows a multi-objective search; archs above ``ref_flops`` add nothing."""
    pts = sorted((o.flops, o.objective("accuracy")) for o in front if o.accuracy is not None and o.flops <= ref_flops)
    area, covered = 0.0, 0.0  # accuracy already covered by cheaper points
    for flops, acc in pts:  # cheapest first: each point adds its strip above what cheaper ones cover
        if acc > covered:
            area += (ref_flops - flops) * (acc - covered)
            covered = acc
    return area / ref_flops if ref_flops > 0 else 0.0


def _search_scalars(obs: Observation, best: Observation, front: list[Observation], ref_flops: int) -> dict[str, float]:
    """What one evaluation adds to the metrics: its own measures, the best so far, the front."""
    out: dict[str, float] = {"flops": obs.flops, "params": obs.params, "front_size": len(front)}
    out["best_flops"] = best.flops
    if obs.accuracy is not None:
        out["accuracy"] = obs.accuracy
    if best.accuracy is not None:
        out["best_accuracy"] = best.accuracy
        out["hypervolume"] = hypervolume(front, ref_flops)
    return out


def _front_table(front: list[Observation]) -> str:
    """The Pareto front as a Markdown table (TensorBoard's text tab renders it)."""
    rows = ["| accuracy | FLOPs | params | arch |", "|---|---|---|---|"]
    for o in front:
        acc = "n/a" if o.accuracy is None else f"{o.accuracy:.4f}"
        rows.append(f"| {acc} | {o.flops:,} | {o.params:,} | `{arch_key(o.arch)}` |")
    return "\n".join(rows)


def select_best(history: list[Observation], objective: str = "accuracy") -> Observation:
    """The best observation; ties broken by fewer FLOPs, then fewer params, then the arch's
    canonical text, so the winner does not depend on the order of evaluation."""
    return min(history, key=lambda o: (-o.objective(objective), o.flops, o.params, arch_key(o.arch)))


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def read_history(path: Path) -> list[dict]:
    """Records of a history file; a last line cut short by an interruption is dropped."""
    if not path.exists():
        return []
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"cannot read history {path}: {exc}", file=str(path)) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if n == len(lines):  # a line cut short by an interruption: drop it
                break
            raise SpaceError(
                f"{path}:{n}: history line is not JSON",
                file=str(path),
                line=n,
                hint="the history is damaged; start a new search without --resume",
            ) from None
        problem = _record_problem(rec)
        if problem:
            raise SpaceError(
                f"{path}:{n}: history line is not a search record: {problem}",
                file=str(path),
                line=n,
                hint="the history is damaged or is not a search history; start a new search without --resume",
            )
        records.append(rec)
    return records


def _record_problem(rec: object) -> str | None:
    """What is wrong with a decoded history line (None for a good record)."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not an object"
    if not isinstance(rec.get("arch_key"), str):
        return "'arch_key' is missing or not a string"
    acc = rec.get("accuracy")
    if acc is not None and (isinstance(acc, bool) or not isinstance(acc, (int, float))):
        return "'accuracy' is not a number or null"
    for key in ("i", "params", "flops"):
        v = rec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            return f"'{key}' is not an integer"
    return None


class _History:
    """The JSON-lines log of a search: refuses to clobber, replays on resume, appends with fsync.

    On resume a last line cut short by an interruption is dropped from the file too, so the
    next record does not land on the fragment.
    """

    def __init__(self, path: Path | None, resume: bool, overwrite: bool, strategy: str, seed: int) -> None:
        self.path, self.strategy, self.seed = path, strategy, seed
        self.replay: list[dict] = []
        self.fh: TextIO | None = None
        if path is None:
            return
        if not resume and not overwrite and path.exists() and path.stat().st_size > 0:
            raise SpaceError(
                f"search history {path} already exists",
                file=str(path),
                hint="continue it with --resume, replace it with --overwrite, or choose --history/--out",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            self.replay = read_history(path)
            clean = "".join(json.dumps(r) + "\n" for r in self.replay)
            if not path.exists() or path.read_text() != clean:
                atomic_write_text(path, clean)
        else:
            path.write_text("")

    def __enter__(self) -> _History:
        self.fh = self.path.open("a") if self.path else None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()

    def replayed(self, i: int, arch: Arch, cost: Callable[[Arch], tuple[int, int]]) -> Observation | None:
        """The logged observation of proposal ``i`` (None past the log's end)."""
        if i >= len(self.replay):
            return None
        rec = self.replay[i]
        if rec.get("arch_key") != arch_key(arch):
            raise SpaceError(
                f"{self.path}: entry {i + 1} does not match what this strategy proposes",
                hint="resume with the same space, strategy, limits and --seed",
            )
        return Observation(arch, rec.get("accuracy"), *cost(arch))

    def append(self, i: int, obs: Observation) -> None:
        if self.fh is None:
            return
        self.fh.write(
            json.dumps(
                {
                    "i": i,
                    "arch_key": arch_key(obs.arch),
                    "accuracy": obs.accuracy,
                    "params": obs.params,
                    "flops": obs.flops,
                    "strategy": self.strategy,
                    "seed": self.seed,
                }
            )
            + "\n"
        )
        self.fh.flush()
        os.fsync(self.fh.fileno())


def _asker(strat: SearchStrategy) -> Callable[[int], list[Arch]]:
    """``n -> proposals`` for a batch strategy, or for a plug-in whose ask() takes no argument."""
    try:
        takes_n = bool(inspect.signature(strat.ask).parameters)
    except (TypeError, ValueError):
        takes_n = True
    if takes_n:
        return lambda n: list(strat.ask(n) or [])

    legacy: Callable[[], Arch | None] = strat.ask  # type: ignore[assignment]

    def one_by_one(n: int) -> list[Arch]:
        out: list[Arch] = []
        for _ in range(n):
            arch = legacy()
            if arch is None:
                break
            out.append(arch)
        return out

    return one_by_one


def run_search(
    space: ResolvedSpace,
    strategy: str | SearchStrategy,
    evaluate: Callable[[Arch], dict[str, float]],
    cost: Callable[[Arch], tuple[int, int]],
    limits: Limits,
    budget: int,
    seed: int = 0,
    objective: str = "accuracy",
    history_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    strategy_options: dict | None = None,
    overwrite: bool = False,
    warn: Callable[[str], None] | None = None,
    batch: int = 1,
    max_repeats: int = 1000,
    evaluate_batch: Callable[[list[Arch]], list[dict[str, float]]] | None = None,
    metrics: MetricsSink | None = None,
) -> SearchResult:
    """Evaluate up to ``budget`` distinct architectures; returns the best and the Pareto front.

    The strategy is asked ``batch`` proposals at a time and told every result in the order
    it proposed them (``batch=1``: ask, evaluate, tell). A proposal already evaluated is
    never evaluated again: the strategy is told the known result and the budget is not
    spent; after ``max_repeats`` such proposals in a row the search stops, and ``warn`` is
    told why. A budget at or below the strategy's warm-up (``strategy.warmup``: evolution's
    population, TPE's start-up trials, NSGA-II's population) makes any strategy a random
    search; ``warn`` is told so (default: ``warnings.warn``).

    ``evaluate_batch`` evaluates a batch's new proposals at once, results in order
    (:class:`trionet_dsl.search.parallel.DistributedEvaluations` spreads them over a torchrun
    job); without it each is evaluated, and logged, in turn. Either way the history and what
    the strategy is told are the same. ``metrics`` receives, per evaluation, its measures, the
    best so far, the Pareto front's size and hypervolume, and the front as text at the end.
    """
    if budget < 1:
        raise SpaceError(
            f"--budget {budget}: the search must evaluate at least one architecture", hint="use --budget 1 or more"
        )
    if batch < 1:
        raise SpaceError(f"--batch {batch}: ask at least one proposal at a time", hint="use --batch 1 or more")
    strat = (
        make_strategy(strategy, space, cost, limits, seed=seed, **(strategy_options or {}))
        if isinstance(strategy, str)
        else strategy
    )
    if resume and getattr(strat, "shared", False):
        raise SpaceError(
            "--resume replays this worker's history, but a shared study (--storage) is already the search's state",
            hint="run the worker again without --resume (and --overwrite or a new --history): it continues the study",
        )
    say = warn or _warn
    warmup = int(getattr(strat, "warmup", 0))
    if budget <= warmup:
        say(
            f"--budget {budget} is within the {warmup} random warm-up proposals of strategy "
            f"'{strat.name}' ({getattr(strat, 'warmup_name', 'warm-up')}): this search is a random "
            "search; raise --budget above it"
        )
    log = _History(Path(history_path) if history_path else None, resume, overwrite, strat.name, seed)
    history: list[Observation] = []
    seen: dict[str, Observation] = {}
    ask = _asker(strat)
    repeats = in_a_row = 0
    stopped: str | None = None

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cols = [
        TextColumn(f"[bold]search ({strat.name})"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeRemainingColumn(),
    ]

    def measured(i: int, arch: Arch, result: dict[str, float]) -> Observation:
        """Evaluation ``i``'s observation, appended to the history file (replayed entries come first)."""
        params, flops = cost(arch)
        extra = {k: v for k, v in result.items() if k != "accuracy"}
        obs = Observation(arch, result.get("accuracy"), params, flops, extra)
        log.append(i, obs)
        return obs

    ref_flops = (limits.max_flops or CostModel(space).extremes()["flops_max"]) if metrics is not None else 1
    front: list[Observation] = []  # of this run's history, kept up to date for the metrics
    with Progress(*cols, disable=not progress) as bar, log:
        task = bar.add_task("search", total=budget, best="-")
        while len(history) < budget:
            proposals = ask(min(batch, budget - len(history)))
            if not proposals:
                stopped = f"strategy '{strat.name}' has no new architecture to propose"
                break
            if space.elastic:  # a plug-in's arch may leave a stage's (full) depth unsaid: the key states every depth
                proposals = [_with_depths(space, a) for a in proposals]
            # which proposals are new (a repeat, in the history or earlier in this batch, is not)
            fresh: dict[str, Arch] = {}
            for arch in proposals:
                key = arch_key(arch)
                if key not in seen and key not in fresh:
                    fresh[key] = arch
            new = list(fresh.values())
            # the first of them may be answered by the history being resumed; the rest are evaluated
            done: list[Observation | None] = [log.replayed(len(history) + j, a, cost) for j, a in enumerate(new)]
            pending = [j for j, o in enumerate(done) if o is None]

            if evaluate_batch is not None and pending:  # one batch across the ranks
                for j, result in zip(pending, evaluate_batch([new[j] for j in pending]), strict=True):
                    done[j] = measured(len(history) + j, new[j], result)
            else:  # one at a time, each logged as soon as it is measured
                for j in pending:
                    done[j] = measured(len(history) + j, new[j], evaluate(new[j]))
            by_key = {arch_key(a): o for a, o in zip(new, done, strict=True) if o is not None}
            told: list[Observation] = []
            for arch in proposals:
                key = arch_key(arch)
                if key in seen:  # answered from the history: no evaluation spent
                    known = seen[key]
                    told.append(Observation(arch, known.accuracy, known.params, known.flops, dict(known.extra)))
                    repeats += 1
                    in_a_row += 1
                    continue
                obs = by_key[key]
                seen[key] = obs
                history.append(obs)
                told.append(obs)
                in_a_row = 0
                best = select_best(history, objective)
                acc = "-" if best.accuracy is None else f"{best.accuracy:.4f}"
                bar.update(task, advance=1, best=f"acc {acc} @ {best.flops / 1e6:.1f}M FLOPs")
                if metrics is not None:
                    front = pareto_front([*front, obs])  # the front of all so far: a dominated arch never returns
                    if len(history) > len(log.replay):  # a resumed run logs only what it evaluates
                        metrics.scalars("search", len(history), _search_scalars(obs, best, front, ref_flops))
            for obs in told:
                strat.tell(obs)
            if in_a_row >= max_repeats:
                stopped = (
                    f"strategy '{strat.name}' proposed {in_a_row} already-evaluated architectures in a row "
                    "(answered from the history)"
                )
                break
    if metrics is not None and history:
        metrics.text("search/front", len(history), _front_table(front))
    if not history:
        raise SpaceError(
            "the search evaluated no architecture",
            hint="the limits may exclude the whole space: check --max-flops / --max-params "
            "against the range `trionet compile` prints",
        )
    if stopped is not None:
        stopped = f"search stopped after {len(history)} of {budget} evaluations: {stopped}"
        say(stopped)
    shared = getattr(strat, "shared_observations", None)
    pool = history + (list(shared()) if callable(shared) else [])
    best = select_best(pool, objective)
    repeats += int(getattr(strat, "answered", 0))  # repeats a strategy answered itself (Optuna)
    return SearchResult(best, pareto_front(pool), history, objective, repeats, stopped)


def _with_depths(space: ResolvedSpace, arch: Arch) -> Arch:
    """``arch`` stating the depth of every elastic stage, so equal networks get equal keys."""
    if all(s in arch.depths for s in space.elastic):
        return arch
    return arch.model_copy(update={"depths": {s: space.depths(arch)[s] for s in space.elastic}})

"""Optuna-backed strategies: TPE (single objective) and NSGA-II (accuracy vs FLOPs).

Each block is three categorical parameters (operator, width, heads-of-that-operator),
so Optuna's samplers see the space's real structure; out-of-limit proposals are told
back as failed trials (they cost nothing: the cost model rejects them before evaluation).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Literal

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.ir import Arch
from trionet_dsl.search.base import CostFn, Limits, Observation, arch_key
from trionet_dsl.space.resolve import Choice, ResolvedSpace


def require_optuna() -> None:
    """A one-line error naming the pip command when optuna (the ``search`` extra) is missing."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise SpaceError("the tpe and nsga2 strategies need optuna", hint="pip install 'trionet-dsl[search]'") from None


def _schema_lock(url: str) -> contextlib.AbstractContextManager[object]:
    """An exclusive lock beside a SQLite file while its schema is made: workers started together
    otherwise race to create the tables (``table ... already exists``, ``UNIQUE constraint``)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the retries in open_storage cover the race
        return contextlib.nullcontext()
    path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else ""
    if not path or path.startswith(":memory:"):
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def locked() -> Iterator[object]:
        with open(path + ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield fh
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    return locked()


def open_storage(url: str):
    """An Optuna storage from ``--storage``: an RDB URL (``sqlite:///study.db``, with a lock
    timeout long enough for several workers) or a path to a journal file."""
    import optuna

    if "://" in url:
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        for attempt in range(5):
            try:
                with _schema_lock(url):
                    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            except Exception as exc:
                # a schema half made by another worker (where no lock could be taken): once
                # made, opening succeeds
                racing = any(m in str(exc) for m in ("IntegrityError", "UNIQUE constraint", "already exists", "locked"))
                if racing and attempt < 4:
                    time.sleep(0.1 * (attempt + 1))
                    continue
                raise SpaceError(
                    f"--storage {url}: cannot open it: {str(exc).splitlines()[0]}",
                    hint="use e.g. sqlite:///study.db, or a journal file path",
                ) from None
    from optuna.storages.journal import JournalFileBackend

    try:
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    except OSError as exc:
        raise SpaceError(f"--storage {url}: cannot open the journal file: {exc}") from None


class OptunaSearch:
    """TPE or NSGA-II over the space's categorical choices.

    No proposal is returned twice: an arch the study already has a result for is told that
    result at once and another is asked (``answered`` counts them); a repeat inside one batch
    is told its twin's result. NSGA-II optimises accuracy alone unless ``multi_objective``
    (then accuracy vs FLOPs). With ``storage`` (``open_storage``) and ``study`` several
    worker processes share one study; each trial records its ``arch_key``, and a worker that
    draws an arch another worker is evaluating gives it up (the trial fails), so no arch is
    evaluated twice.
    """

    def __init__(
        self,
        space: ResolvedSpace,
        cost: CostFn,
        limits: Limits,
        seed: int = 0,
        sampler: str = "tpe",
        multi_objective: bool = False,
        storage: str | None = None,
        study: str | None = None,
        tries: int = 2000,
        **_: object,
    ) -> None:
        require_optuna()
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space, self.cost, self.limits = space, cost, limits
        self.multi = sampler == "nsga2" and multi_objective
        self.name, self.tries = sampler, tries
        s = (
            optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
            if sampler == "nsga2"
            else optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True)
        )
        self.warmup = 16 if sampler == "nsga2" else 10
        self.warmup_name = (
            "its first population is sampled at random"
            if sampler == "nsga2"
            else "its start-up trials are sampled at random"
        )
        directions: list[Literal["maximize", "minimize"]] = ["maximize", "minimize"] if self.multi else ["maximize"]
        self.shared = storage is not None
        if study is not None and storage is None:
            raise SpaceError("--study needs --storage", hint="e.g. --storage sqlite:///study.db --study NAME")
        name = study or f"trionet-{space.name}-{sampler}"
        try:
            self.study = optuna.create_study(
                directions=directions,
                sampler=s,
                storage=open_storage(storage) if storage else None,
                study_name=name if storage else None,
                load_if_exists=True,
            )
        except ValueError as exc:  # e.g. an existing study with other directions
            raise SpaceError(
                f"study '{name}' in {storage}: {exc}", hint="use another --study, or the same objectives"
            ) from None
        if len(self.study.directions) != len(directions):
            raise SpaceError(
                f"study '{name}' in {storage} optimises {len(self.study.directions)} objective(s), "
                f"this search {len(directions)}",
                hint="use another --study, or the same --multi-objective setting as its other workers",
            )
        self.pending: dict[str, list] = {}
        self.known: dict[str, list[float]] = {}
        self.answered = 0

    def _arch(self, trial) -> Arch:
        """The trial's arch: per stage its depth (``S.depth``, elastic stages only), then the choices
        of the blocks that exist (parameters of absent blocks are not suggested: define-by-run)."""
        blocks = []
        depths = {
            s: trial.suggest_categorical(f"{s}.depth", list(self.space.depth_choices[s])) for s in self.space.elastic
        }
        for b in self.space.blocks:
            if b.index >= depths.get(b.stage, b.index + 1):
                continue
            sigs = [o.op.signature for o in b.options]
            sig = trial.suggest_categorical(f"{b.key}.op", sigs) if len(sigs) > 1 else sigs[0]
            width = trial.suggest_categorical(f"{b.key}.width", list(b.widths)) if len(b.widths) > 1 else b.widths[0]
            opt = b.options[sigs.index(sig)]
            heads = None
            if opt.heads:
                heads = (
                    trial.suggest_categorical(f"{b.key}.{opt.op.kind}.heads", list(opt.heads))
                    if len(opt.heads) > 1
                    else opt.heads[0]
                )
            blocks.append(b.arch_block(Choice(opt.op, width, heads)))
        return Arch(name="candidate", space=self.space.name, blocks=tuple(blocks), depths=depths)

    def _others(self, key: str, trial) -> tuple[list[float] | None, bool]:
        """(values of a finished trial of this arch, whether another worker is evaluating it)."""
        import optuna

        if key in self.known:
            return self.known[key], False
        if not self.shared:
            return None, False
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
        running = False
        for t in self.study.get_trials(deepcopy=False, states=states):
            if t.number == trial.number or t.user_attrs.get("arch_key") != key:
                continue
            if t.state == optuna.trial.TrialState.COMPLETE and t.values is not None:
                return list(t.values), False
            running = True
        return None, running

    def ask(self, n: int = 1) -> list[Arch]:
        """Up to ``n`` distinct archs with no result yet (fewer after ``tries`` draws)."""
        import optuna

        out: list[Arch] = []
        for _ in range(self.tries):
            if len(out) >= n:
                break
            trial = self.study.ask()
            arch = self._arch(trial)
            if not self.limits.admits(*self.cost(arch)):
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            key = arch_key(arch)
            if self.pending.get(key):  # a twin in this batch: told with it
                self.pending[key].append(trial)
                self.answered += 1
                continue
            trial.set_user_attr("arch_key", key)  # set, then look: of two racing workers one sees the other
            values, running = self._others(key, trial)
            if values is not None:
                self.study.tell(trial, values)
                self.answered += 1
                continue
            if running:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            self.pending.setdefault(key, []).append(trial)
            out.append(arch)
        return out

    def tell(self, obs: Observation) -> None:
        key = arch_key(obs.arch)
        acc = obs.objective("accuracy")
        values = [acc, float(obs.flops)] if self.multi else [acc]
        self.known[key] = values
        trials = self.pending.pop(key, [])
        if not trials:  # an observation this strategy did not ask for (e.g. replayed): enqueue it
            trial = self.study.ask()
            self._arch(trial)
            trials = [trial]
        trials[0].set_user_attr("evaluated", True)  # the rest are twins told the same result
        for trial in trials:
            self.study.tell(trial, values)

    def shared_observations(self) -> list[Observation]:
        """Every arch the shared study has a result for (all workers'), for the best of all."""
        import optuna

        if not self.shared:
            return []
        found: dict[str, Observation] = {}
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.values is None:
                continue
            arch = self._arch(optuna.trial.FixedTrial(t.params))
            found.setdefault(arch_key(arch), Observation(arch, t.values[0], *self.cost(arch)))
        return list(found.values())

"""Optuna-backed strategies: TPE (single objective) and NSGA-II (accuracy vs FLOPs).

Each block is three categorical parameters (operator, width, heads-of-that-operator),
so Optuna's samplers see the space's real structure; out-of-limit proposals are told
back as failed trials (they cost nothing: the cost model rejects them before evaluation).
"""

from __future__ import annotations

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


class OptunaSearch:
    def __init__(
        self, space: ResolvedSpace, cost: CostFn, limits: Limits, seed: int = 0, sampler: str = "tpe", **_: object
    ) -> None:
        require_optuna()
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space, self.cost, self.limits = space, cost, limits
        self.multi = sampler == "nsga2"
        self.name = sampler
        s = (
            optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
            if self.multi
            else optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True)
        )
        self.warmup = 16 if self.multi else 10
        self.warmup_name = (
            "its first population is sampled at random" if self.multi else "its start-up trials are sampled at random"
        )
        directions: list[Literal["maximize", "minimize"]] = ["maximize", "minimize"] if self.multi else ["maximize"]
        self.study = optuna.create_study(directions=directions, sampler=s)
        self.pending: dict[str, list] = {}

    def _arch(self, trial) -> Arch:
        blocks = []
        for b in self.space.blocks:
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
        return Arch(name="candidate", space=self.space.name, blocks=tuple(blocks))

    def ask(self) -> Arch | None:
        import optuna

        for _ in range(2000):
            trial = self.study.ask()
            arch = self._arch(trial)
            if self.limits.admits(*self.cost(arch)):
                self.pending.setdefault(arch_key(arch), []).append(trial)
                return arch
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None

    def tell(self, obs: Observation) -> None:
        trials = self.pending.get(arch_key(obs.arch))
        if not trials:  # an observation this strategy did not ask for (e.g. replayed): enqueue it
            trial = self.study.ask()
            self._arch(trial)
        else:
            trial = trials.pop(0)
        acc = obs.objective("accuracy")
        values = [acc, float(obs.flops)] if self.multi else [acc]
        self.study.tell(trial, values)

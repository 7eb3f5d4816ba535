"""Optuna strategies sharing one study through --storage: no trial lost, none evaluated twice,
the best reported is the best of all workers'; nsga2 is single-objective unless asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from trionet_dsl.search.base import Limits, arch_key
from trionet_dsl.search.driver import run_search
from trionet_dsl.search.tabular import TableEvaluator
from trionet_dsl.space.cost import CostModel

optuna = pytest.importorskip("optuna")
SPACE = Path(__file__).resolve().parents[2] / "spaces" / "trionet_small.space"


def _keys(history: Path) -> list[str]:
    return [json.loads(line)["arch_key"] for line in history.read_text().splitlines()]


def test_two_worker_processes_share_one_sqlite_study(tmp_path):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def worker(seed: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "trionet_dsl", "search", str(SPACE), "--evaluator", "table"]
        cmd += ["--strategy", "tpe", "--budget", "10", "--seed", str(seed), "--storage", db, "--study", "s"]
        cmd += ["--out", str(tmp_path / f"w{seed}.arch"), "--json"]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    procs = [worker(0), worker(1)]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        reports.append(json.loads(out))
    per_worker = [_keys(tmp_path / f"w{s}.history.jsonl") for s in (0, 1)]
    assert [len(k) for k in per_worker] == [10, 10]
    evaluated = per_worker[0] + per_worker[1]
    assert len(set(evaluated)) == 20  # none evaluated twice, by either worker or across them

    study = optuna.load_study(study_name="s", storage=db)
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    marked = sorted(t.user_attrs["arch_key"] for t in done if t.user_attrs.get("evaluated"))
    assert marked == sorted(evaluated)  # no trial lost: every evaluation is in the study, once
    assert {t.user_attrs["arch_key"] for t in done} <= set(evaluated)  # the rest are answered copies

    best_of_all = max(
        json.loads(line)["accuracy"] for s in (0, 1) for line in (tmp_path / f"w{s}.history.jsonl").open()
    )
    assert max(r["accuracy"] for r in reports) == best_of_all
    # a third worker joining the finished study reports the best of all 21 evaluations
    from trionet_dsl.app.searching import search_job

    third = search_job(
        SPACE,
        None,
        tmp_path / "w2.arch",
        strategy="tpe",
        budget=1,
        evaluator="table",
        seed=2,
        storage=db,
        study="s",
        progress=False,
    )
    own = json.loads((tmp_path / "w2.history.jsonl").read_text())["accuracy"]
    assert third.accuracy == max(best_of_all, own)


def test_a_second_worker_never_reevaluates_the_first_ones_archs(small_space, tmp_path):
    """One journal file, one worker after the other; the second's sampler is made to draw three
    of the first worker's archs (enqueued trials): the study answers them, nothing is re-evaluated."""
    journal = str(tmp_path / "study.log")

    def work(seed: int):
        table = TableEvaluator(small_space, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = run_search(
                small_space,
                "tpe",
                table,
                CostModel(small_space),
                Limits(),
                12,
                seed=seed,
                progress=False,
                strategy_options={"storage": journal, "study": "j"},
            )
        return res, table

    a, ta = work(0)
    from trionet_dsl.search.optuna_search import open_storage

    study = optuna.load_study(study_name="j", storage=open_storage(journal))
    for t in study.get_trials()[:3]:
        study.enqueue_trial(t.params)
    b, tb = work(1)
    ka, kb = ({arch_key(o.arch) for o in r.history} for r in (a, b))
    assert len(ka) == len(kb) == ta.queries == tb.queries == 12
    assert not ka & kb and b.repeats >= 3
    assert b.best.accuracy == max(o.accuracy for o in a.history + b.history)


@pytest.mark.parametrize("multi, directions", [(False, 1), (True, 2)])
def test_nsga2_is_single_objective_unless_asked(small_space, multi, directions):
    from trionet_dsl.search.optuna_search import OptunaSearch

    s = OptunaSearch(small_space, CostModel(small_space), Limits(), sampler="nsga2", multi_objective=multi)
    assert len(s.study.directions) == directions


def test_storage_errors_are_one_line(tmp_path):
    from trionet_dsl.app.searching import search_job
    from trionet_dsl.lang.errors import SpaceError

    with pytest.raises(SpaceError, match="--study needs --storage"):
        search_job(SPACE, None, tmp_path / "a.arch", strategy="tpe", evaluator="table", study="x", progress=False)
    with pytest.raises(SpaceError, match="Optuna strategies"):
        search_job(SPACE, None, tmp_path / "a.arch", evaluator="table", storage="sqlite:///x.db", progress=False)
    with pytest.raises(SpaceError, match="--resume"):
        search_job(
            SPACE,
            None,
            tmp_path / "a.arch",
            strategy="tpe",
            evaluator="table",
            storage=f"sqlite:///{tmp_path / 'x.db'}",
            resume=True,
            progress=False,
        )


def test_a_study_with_other_objectives_is_refused(small_space, tmp_path):
    from trionet_dsl.lang.errors import SpaceError
    from trionet_dsl.search.optuna_search import OptunaSearch

    db = f"sqlite:///{tmp_path / 'd.db'}"
    OptunaSearch(small_space, CostModel(small_space), Limits(), sampler="nsga2", storage=db, study="x")
    with pytest.raises(SpaceError, match="optimises 1 objective"):
        OptunaSearch(
            small_space, CostModel(small_space), Limits(), sampler="nsga2", multi_objective=True, storage=db, study="x"
        )

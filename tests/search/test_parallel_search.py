"""Search under torchrun (gloo, 2 CPU processes): the same seed gives the same history and best
arch, twice, resumed, and as one process asking the same batches; rank 0 stopping stops all."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trionet_dsl.app.searching import search_job
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.search import parallel
from trionet_dsl.search.base import arch_key
from trionet_dsl.search.tabular import TableEvaluator
from trionet_dsl.space.loader import load_space
from trionet_dsl.space.sampling import sample

HERE = Path(__file__).resolve().parent
SPACE = HERE.parents[1] / "spaces" / "trionet_small.space"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), *sys.path])}


def _body(arch_file: Path) -> str:
    return arch_file.read_text().split("{", 1)[1]  # the arch's name (the file's stem) aside


class _FakeGroup:
    """torch.distributed for rank 0 of ``world`` ranks, the other ranks simulated in-process."""

    def __init__(self, world: int, evaluate, fail_on_rank: int | None = None) -> None:
        self.world, self.evaluate, self.fail_on_rank = world, evaluate, fail_on_rank
        self.sent: list = []

    def get_world_size(self) -> int:
        return self.world

    def broadcast_object_list(self, msg: list, src: int) -> None:
        self.sent.append(msg[0])

    def gather_object(self, mine: list, gathered: list, dst: int) -> None:
        archs = self.sent[-1][1]
        gathered[0] = mine
        for r in range(1, self.world):
            fn = self.evaluate
            if r == self.fail_on_rank:

                def fn(arch):
                    raise MemoryError("out of memory")

            gathered[r] = parallel._evaluate_share(fn, archs, parallel.shares(len(archs), self.world)[r])


def _archs(n: int):
    import random

    rs = load_space(SPACE)
    rng = random.Random(0)
    return rs, [sample(rs, rng, "hierarchical") for _ in range(n)]


def test_a_batch_split_over_ranks_comes_back_in_candidate_order(monkeypatch):
    assert parallel.shares(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]
    rs, archs = _archs(7)
    table = TableEvaluator(rs, seed=0)
    spread = parallel.DistributedEvaluations(table, comm=_FakeGroup(3, table))
    assert spread(archs) == [table(a) for a in archs]  # one process evaluating in order: the reference
    spread.close(result="done")
    assert spread.dist.sent[-1] == ("stop", (None, "done"))


def test_an_evaluation_failing_on_another_rank_names_the_rank_and_arch():
    rs, archs = _archs(4)
    table = TableEvaluator(rs, seed=0)
    spread = parallel.DistributedEvaluations(table, comm=_FakeGroup(2, table, fail_on_rank=1))
    with pytest.raises(SpaceError) as info:
        spread(archs)
    assert "rank 1" in str(info.value) and arch_key(archs[1]) in str(info.value) and "MemoryError" in str(info.value)


def _torchrun(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def test_two_processes_search_reproducibly_and_like_one_process_with_the_same_batches(tmp_path):
    run = _torchrun(str(HERE / "parallel_worker.py"), str(tmp_path), str(SPACE))
    assert run.returncode == 0, run.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == 2
    assert {k: v for k, v in r0.items() if k != "error"} == {k: v for k, v in r1.items() if k != "error"}
    history = (tmp_path / "a.history.jsonl").read_text()
    assert len(history.splitlines()) == 24 == r0["a"]["evaluated"]
    assert len({json.loads(line)["arch_key"] for line in history.splitlines()}) == 24
    # twice the same seed: the same history and best arch; stopped at 12 and resumed: the same too
    assert (tmp_path / "b.history.jsonl").read_text() == history == (tmp_path / "r.history.jsonl").read_text()
    assert _body(tmp_path / "a.arch") == _body(tmp_path / "b.arch") == _body(tmp_path / "r.arch")
    # the strong form: one process asking the same batches of 2 writes the same history
    one = search_job(SPACE, None, tmp_path / "one.arch", evaluator="table", budget=24, seed=3, batch=2, progress=False)
    assert (tmp_path / "one.history.jsonl").read_text() == history
    assert _body(tmp_path / "one.arch") == _body(tmp_path / "a.arch") and one.accuracy == r0["a"]["accuracy"]
    # rank 0 refused to clobber a history; rank 1 stopped instead of waiting for it
    assert r0["error"][0] == "refused" and "already exists" in r0["error"][1]
    assert r1["error"][0] == "stopped" and "rank 0 stopped the search" in r1["error"][1]


def test_nproc_launches_torchrun_and_only_rank_0_reports(tmp_path):
    args = ["search", str(SPACE), "--evaluator", "table", "--budget", "8", "--seed", "5", "--json"]
    cmd = [sys.executable, "-m", "trionet_dsl", *args, "--out", str(tmp_path / "p.arch"), "--nproc", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)  # one JSON document: rank 1 printed nothing
    assert report["evaluated"] == 8
    search_job(SPACE, None, tmp_path / "s.arch", evaluator="table", budget=8, seed=5, batch=2, progress=False)
    assert (tmp_path / "p.history.jsonl").read_text() == (tmp_path / "s.history.jsonl").read_text()


def test_a_supernet_evaluation_depends_on_the_arch_alone(tmp_path):
    """What lets ranks split a batch: each rank's evaluator (the same checkpoint) measures an arch
    the same whatever it measured before, so any split gives one process's results."""
    import random

    import numpy as np
    import torch

    from trionet_dsl.app.datasets import load_dataset
    from trionet_dsl.nn.supernet import Supernet
    from trionet_dsl.search.evaluators import SupernetEvaluator

    tiny = load_space(HERE.parent / "data" / "tiny.space")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, size=(60, 16, 16, 3), dtype=np.uint8), y=np.arange(60) % 3)
    data = load_dataset(str(tmp_path / "d.npz"), tiny, 0.5, 0)
    state = Supernet(tiny, seed=0).state_dict()  # "the checkpoint" every rank loads
    torch.manual_seed(0)  # BN scales away from their zero init (where every block is the identity)
    state = {k: torch.rand_like(v) + 0.5 if v.ndim == 1 and k.endswith("weight") else v for k, v in state.items()}

    def rank_evaluator() -> SupernetEvaluator:
        net = Supernet(tiny, seed=1)
        net.load_state_dict(state)
        return SupernetEvaluator(net, data, bn_batches=2, batch_size=8, seed=0)

    def measured(ev: SupernetEvaluator, arch) -> tuple[float, torch.Tensor]:
        """The accuracy, and the logits it came from (the evaluation leaves the arch active)."""
        acc = ev(arch)["accuracy"]
        with torch.no_grad():
            return acc, ev.net(ev.data.val_x.contiguous(memory_format=torch.channels_last))

    sampler = random.Random(3)
    archs = list({arch_key(a): a for a in (sample(tiny, sampler, "hierarchical") for _ in range(12))}.values())[:6]
    one = rank_evaluator()
    reference = [measured(one, a) for a in archs]
    # the archs really differ (else any split would agree): pairwise different logits
    assert all(not torch.allclose(x[1], y[1]) for x, y in itertools.pairwise(reference))
    ranks = [rank_evaluator(), rank_evaluator()]
    split = parallel.shares(len(archs), 2)
    got: dict[int, tuple[float, torch.Tensor]] = {}
    for r in (1, 0):  # the other rank first, and each in its own order
        for i in reversed(split[r]):
            got[i] = measured(ranks[r], archs[i])
    for i, (acc, logits) in enumerate(reference):
        assert got[i][0] == acc and torch.equal(got[i][1], logits)
    assert torch.equal(ranks[0].net.fc.weight, one.net.fc.weight)  # evaluation trains nothing


def test_nproc_options_are_checked_and_handed_on_without_itself(monkeypatch):
    from trionet_dsl.app.launch import relaunch, torchrun_command

    cmd = torchrun_command(3, ["search", "s.space", "--nproc", "3", "--budget", "4", "--nproc=3", "--seed", "1"])
    assert cmd[cmd.index("-m", 3) :] == ["-m", "trionet_dsl", "search", "s.space", "--budget", "4", "--seed", "1"]
    assert "--nproc_per_node=3" in cmd and "--standalone" in cmd
    with pytest.raises(SpaceError, match="at least 1"):
        relaunch(0, ["search", "--nproc", "0"])
    assert relaunch(1, ["search", "--nproc", "1"]) is None  # one process: run here
    with pytest.raises(SpaceError, match="has none"):  # a Python caller's argv is not the command
        relaunch(2, ["pytest", "-q"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SpaceError, match="already runs under torchrun"):
        relaunch(2, ["search", "--nproc", "2"])

"""Data-parallel training (issue 10, item 3): 2 gloo processes x batch 16 with ``--sync-bn`` end
where 1 process x batch 32 ends, for a supernet and a fixed arch; the sliced SyncBN equals plain
BN on the concatenated batch; a killed and resumed 2-process run equals the uninterrupted one.

The 2-process side runs once, under torchrun (``ddp_worker.py``), for the whole module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from trionet_dsl import load, load_arch
from trionet_dsl.app.cli import app
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.train import TrainConfig, train
from trionet_dsl.train.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
TINY = HERE.parent / "data" / "tiny.space"
ROOT = HERE.parent.parent
# 120 images, val 0.2 -> 96 training images, global batch 32 -> 3 steps an epoch; 4 steps cross
# an epoch's end (validation on rank 0) into epoch 2; the cut run stops at step 2, mid-epoch 1
STEPS, CUT = 4, 2
SUPER_CFG = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=3, sync_bn=True, sampling="sandwich", sandwich_random=0)
ARCH_CFG = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=3, sync_bn=True)
ARCH = "arch a of tiny {\n  s1.0 local(span=3) width 8 heads 2\n  s2.0 axial width 8 heads 1\n}\n"

# Weights after 4 steps, 2 processes vs 1: measured max |difference| 6e-7 (float32 sums in another
# order: the gradient all-reduce and the BN statistics' all-reduce); the tolerance is 20x that.
ATOL, RTOL = 1e-5, 1e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(1)
    y = np.arange(120) % 3
    x = rng.integers(0, 60, size=(120, 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * c : 4 * c + 4] += 150
    npz = root / "blobs.npz"
    np.savez(npz, x=x, y=y)
    arch_file = root / "a.arch"
    arch_file.write_text(ARCH)
    spec = {
        "out": str(root),
        "space": str(TINY),
        "arch": str(arch_file),
        "npz": str(npz),
        "super_cfg": SUPER_CFG.model_dump(),
        "arch_cfg": ARCH_CFG.model_dump(),
        "steps": STEPS,
        "cut_at": CUT,
    }
    (root / "spec.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(HERE / "ddp_worker.py"), str(root / "spec.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the same runs in this one process, with the whole batch of 32
    space = load(TINY)
    data = load_dataset(str(npz), space, 0.2, seed=0)
    train(space, data, SUPER_CFG, root / "one_super", progress=False, steps=STEPS)
    train(load_arch(arch_file, TINY), data, ARCH_CFG, root / "one_arch", progress=False, steps=STEPS)
    return root


def _compare(a: Path, b: Path, exact: bool = False) -> float:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    wa, wb = ca["model"], cb["model"]
    assert wa.keys() == wb.keys()
    worst = 0.0
    for k in wa:
        if exact:
            assert torch.equal(wa[k], wb[k]), k
        elif wa[k].is_floating_point():
            torch.testing.assert_close(wa[k], wb[k], atol=ATOL, rtol=RTOL, msg=lambda m, k=k: f"{k}: {m}")
            worst = max(worst, (wa[k] - wb[k]).abs().max().item())
        else:
            assert torch.equal(wa[k], wb[k]), k  # num_batches_tracked: the same BNs ran as often
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    # the same parameters got gradients (momentum) at all: none took a stale or zero gradient
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"], atol=ATOL, rtol=RTOL)
    return worst


def test_two_processes_of_16_train_the_supernet_as_one_of_32(runs):
    worst = _compare(runs / "one_super" / "supernet.pt", runs / "super" / "supernet.pt")
    assert worst > 0  # two real processes ran: float sums in another order are not bit-equal
    one, two = load_checkpoint(runs / "one_super" / "supernet.pt"), load_checkpoint(runs / "super" / "supernet.pt")
    assert (one["epoch"], one["step"]) == (two["epoch"], two["step"]) == (1, 1)
    assert (
        two["epoch_sums"]["seen"] == one["epoch_sums"]["seen"] == 2 * 32
    )  # one step of epoch 2; sandwich: smallest and largest
    assert two["epoch_sums"]["correct"] == one["epoch_sums"]["correct"]
    m1 = json.loads((runs / "one_super" / "metrics.jsonl").read_text().splitlines()[0])
    m2 = json.loads((runs / "super" / "metrics.jsonl").read_text().splitlines()[0])
    assert m1["train_loss"] == pytest.approx(m2["train_loss"], abs=1e-5)
    assert m1["val_acc"] == m2["val_acc"]


def test_two_processes_train_a_fixed_arch_as_one(runs):
    _compare(runs / "one_arch" / "model.pt", runs / "arch" / "model.pt")


def test_killed_and_resumed_two_process_run_matches_the_uninterrupted_one(runs):
    _compare(runs / "super" / "supernet.pt", runs / "cut" / "supernet.pt", exact=True)
    assert load_checkpoint(runs / "cut" / "supernet.pt")["world_size"] == 2


def test_sliced_sync_bn_equals_plain_bn_on_the_whole_batch(runs):
    errors = json.loads((runs / "sync_bn.json").read_text())
    assert set(errors) == {"prefix", "grid", "full"}
    for name, errs in errors.items():
        assert max(errs) < 1e-12, (name, errs)  # float64: output, grads, running stats of 2 steps


def test_nproc_options_are_checked_before_any_worker_starts(tmp_path):
    res = CliRunner().invoke(
        app, ["train", str(TINY), "--batch-size", "31", "--nproc", "2", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2
    assert "--batch-size 31 does not split over 2 processes" in res.output


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("TRIONET_SLOW"),
    reason="slow: set TRIONET_SLOW=1 (benchmarks/ddp_throughput.py runs --nproc 2 too)",
)
def test_cli_nproc_two_reports_once_and_trains_as_one_process(runs, tmp_path):
    cfg = ["--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--seed", "3", "--sync-bn", "--steps", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "trionet_dsl", "train", str(TINY), "--data", str(runs / "blobs.npz"), *cfg]
    proc = subprocess.run(
        [*cmd, "--nproc", "2", "--json", "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"checkpoint"') == 1  # rank 0 alone printed its summary
    assert json.loads(proc.stdout)["saved_step"] == 2
    space = load(TINY)
    data = load_dataset(str(runs / "blobs.npz"), space, 0.2, seed=3)  # the CLI splits with --seed
    one_cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=3, sync_bn=True)
    train(space, data, one_cfg, tmp_path / "one", progress=False, steps=2)
    _compare(tmp_path / "one" / "supernet.pt", tmp_path / "two" / "supernet.pt")

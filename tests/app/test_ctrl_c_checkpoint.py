"""Ctrl-C while a checkpoint is being written: the documented message, exit 130, no traceback, no debris."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

import trionet_dsl.train.checkpoint
from trionet_dsl.app.cli import app

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny.space"


def _npz(tmp_path: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "few.npz"
    np.savez(p, x=rng.integers(0, 255, size=(n, 8, 8, 3), dtype=np.uint8), y=np.arange(n) % 3)
    return p


def test_ctrl_c_in_the_middle_of_a_checkpoint_write(tmp_path, monkeypatch):
    real_save = torch.save

    def half_then_ctrl_c(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(trionet_dsl.train.checkpoint.torch, "save", half_then_ctrl_c)
    out = tmp_path / "run"
    r = CliRunner().invoke(
        app,
        [
            "train",
            str(TINY),
            "--data",
            str(_npz(tmp_path)),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    monkeypatch.setattr(trionet_dsl.train.checkpoint.torch, "save", real_save)
    assert r.exit_code == 130, r.output
    assert "interrupted" in r.output and "Traceback" not in r.output
    assert "nothing was saved" in r.output
    assert not any(n.endswith(".tmp") for n in os.listdir(out)) if out.exists() else True
    assert not (out / "supernet.pt").exists()


def test_real_sigint_during_a_checkpoint_write(tmp_path):
    """The same with a real SIGINT delivered while torch.save is writing, in a fresh process."""
    import subprocess
    import sys

    out = tmp_path / "run"
    code = (
        "import os, signal, sys, time\n"
        "import trionet_dsl.train.checkpoint as ck\n"
        "def save(obj, f, *a, **k):\n"
        "    f.write(b'PK half')\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.5)\n"
        "ck.torch.save = save\n"
        "from trionet_dsl.app.cli import app\n"
        f"sys.argv = ['trionet', 'train', {str(TINY)!r}, '--data', {str(_npz(tmp_path))!r}, '--epochs', '1',"
        f" '--batch-size', '8', '--out', {str(out)!r}, '--no-progress']\n"
        "app()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 130, r.stdout + r.stderr
    assert "interrupted: stopped before the first epoch finished" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert not any(n.endswith(".tmp") for n in os.listdir(out)) if out.exists() else True

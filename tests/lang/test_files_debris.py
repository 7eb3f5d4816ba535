"""Interrupted atomic writes leave no debris: stale temps are removed on the next write of the target."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from trionet_dsl.lang.files import atomic_write, atomic_write_text, remove_stale_temps


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_name_holds_the_writers_pid(tmp_path):
    seen = []

    def write(f):
        seen.extend(os.listdir(tmp_path))
        f.write(b"x")

    atomic_write(tmp_path / "a.pt", write)
    assert len(seen) == 1 and seen[0].startswith(f".a.pt.{os.getpid()}.") and seen[0].endswith(".tmp")
    assert os.listdir(tmp_path) == ["a.pt"]


def test_stale_temps_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "supernet.pt"
    dead = tmp_path / f".supernet.pt.{_dead_pid()}.abcd1234.tmp"
    live = tmp_path / f".supernet.pt.{os.getpid()}.efgh5678.tmp"
    old = tmp_path / ".supernet.pt.k2j3h4g5.tmp"  # an older writer's name, no pid
    young = tmp_path / ".supernet.pt.z9y8x7w6.tmp"
    other = tmp_path / f".supernet.pt.x.{_dead_pid()}.abcd1234.tmp"  # a temp of 'supernet.pt.x'
    for p in (dead, live, old, young, other):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert not dead.exists() and not old.exists()
    assert live.exists() and young.exists() and other.exists()


def test_kill_9_during_write_leaves_a_temp_the_next_write_removes(tmp_path):
    target = tmp_path / "supernet.pt"
    code = (
        "import os, signal\n"
        "from trionet_dsl.lang.files import atomic_write\n"
        f"atomic_write({str(target)!r}, lambda f: (f.write(b'half'), os.kill(os.getpid(), signal.SIGKILL)))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    assert any(n.endswith(".tmp") for n in os.listdir(tmp_path))
    atomic_write_text(target, "ok")
    assert os.listdir(tmp_path) == ["supernet.pt"]


@pytest.mark.parametrize("missing", [True, False])
def test_remove_stale_temps_tolerates_missing_folder(tmp_path, missing):
    d = tmp_path / "nope" if missing else tmp_path
    assert remove_stale_temps(d / "f") == []

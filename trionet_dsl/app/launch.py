"""``--nproc N``: run the same command under torchrun with N processes on this machine.

A convenience over typing ``torchrun --standalone --nproc_per_node=N -m trionet_dsl ...``
(which also works, as do torchrun's multi-node rendezvous options): the command line is
handed on unchanged but for ``--nproc``, so each process runs the command the user wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys

from trionet_dsl.lang.errors import SpaceError


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less ``--nproc N`` / ``--nproc=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line that runs ``argv`` (``trionet``'s arguments) in ``nproc`` processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "trionet_dsl",
        *without_nproc(argv),
    ]


def relaunch(nproc: int, argv: list[str]) -> int | None:
    """Run ``argv`` under torchrun in ``nproc`` processes and return its exit status; None when
    this process should just run the command itself (``--nproc 1``)."""
    if nproc < 1:
        raise SpaceError(f"--nproc {nproc} must be at least 1", hint="e.g. --nproc 2 (one process per GPU)")
    if "WORLD_SIZE" in os.environ:
        raise SpaceError(
            "--nproc launches torchrun itself, but this process already runs under torchrun",
            hint="drop --nproc (torchrun's --nproc_per_node sets the processes)",
        )
    if nproc == 1:
        return None
    if not any(a == "--nproc" or a.startswith("--nproc=") for a in argv):  # called from Python, not a shell
        raise SpaceError(
            "--nproc re-runs the command line under torchrun, but this call has none",
            hint="launch the processes yourself: torchrun --nproc_per_node=N -m trionet_dsl ...",
        )
    return subprocess.call(torchrun_command(nproc, argv))

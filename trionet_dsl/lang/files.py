"""Files of the language: atomic writes (a crash or Ctrl-C never leaves a half-written
file), and the shipped spaces, found through ``importlib.resources`` so they work from a
wheel, a zip or an editable install alike."""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import IO

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # Python 3.10 keeps it in importlib.abc
    from importlib.abc import Traversable

from trionet_dsl.lang.errors import SpaceError


def _umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


STALE_UNKNOWN_S = 3600
"""A temp file whose writer cannot be told (no pid in its name) is stale after this many seconds."""


_TEMP_TAIL = re.compile(r"(?:([0-9]+)\.)?[A-Za-z0-9_]+\.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # a live process of another user (or a pid the OS cannot hold)
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temp files that interrupted writes of ``path`` left beside it (``.NAME.PID.*.tmp``).

    Only stale ones: a temp whose writer's pid is no longer running (an older temp without a pid
    in its name once it is an hour old); a write in progress in another process is left alone.
    Returns the files removed; failures to list or remove are ignored (the write goes on).
    """
    prefix = f".{path.name}."
    removed: list[Path] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        tmp = path.parent / name
        m = _TEMP_TAIL.fullmatch(name[len(prefix) :])  # PID.RANDOM.tmp, or RANDOM.tmp (older writers)
        if m is None:
            continue  # another file's temp (``.NAME.x.PID.R.tmp`` of NAME.x) or not ours
        try:
            if m.group(1):
                stale = not _pid_alive(int(m.group(1)))
            else:
                stale = time.time() - tmp.stat().st_mtime > STALE_UNKNOWN_S
            if stale and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write through ``write(fileobj)`` into a temp file beside ``path``, fsync, then rename.

    The file gets the mode a plain ``open(path, "w")`` would give it: an existing file keeps
    its mode, a new one gets ``0o666`` less the umask (``mkstemp`` alone makes every file
    0600). Writing to a symlink rewrites the file it points to; the link stays a link.
    Returns the path written (the link's target for a link).
    """
    p = Path(path)
    if p.is_symlink():
        p = Path(os.path.realpath(p))
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    p.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(p)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{os.getpid()}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def shipped_space(name: str) -> Traversable | None:
    """The shipped ``NAME.space`` (or ``archs/NAME.arch`` when ``name`` ends in .arch), if any.

    A Traversable, not a path: inside a wheel or zip there may be no file on disk.
    """
    try:
        root = resources.files("trionet_dsl.spaces")
    except ModuleNotFoundError:  # a source checkout that was never installed
        root = Path(__file__).resolve().parents[2] / "spaces"  # a Path is a Traversable
    # one name per joinpath: an installed namespace package gives a MultiplexedPath, whose
    # joinpath takes a single name on Python < 3.12
    entry = root.joinpath("archs").joinpath(name) if name.endswith(".arch") else root.joinpath(f"{name}.space")
    return entry if entry.is_file() else None


def find_space(name: str, near: Path | None = None) -> Path | Traversable:
    """Where the space called ``name`` lives: next to an arch file, one folder up, ``./spaces``,
    then the shipped spaces."""
    candidates: list[Path] = []
    if near is not None:
        d = near if near.is_dir() else near.parent
        candidates += [d / f"{name}.space", d.parent / f"{name}.space"]
    candidates.append(Path.cwd() / "spaces" / f"{name}.space")
    for c in candidates:
        if c.is_file():
            return c
    shipped = shipped_space(name)
    if shipped is not None:
        return shipped
    raise SpaceError(
        f"cannot find space '{name}'",
        file=str(near or name),
        hint=f"looked for {name}.space next to the arch file, one folder up, in ./spaces and in "
        "the shipped spaces; pass --space FILE",
    )

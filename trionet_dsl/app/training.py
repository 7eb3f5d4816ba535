"""``trionet train``: a `.space` trains its supernet, an `.arch` trains from scratch; ``--nproc N``
starts N data-parallel workers through torchrun's engine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.app.options import check_val_fraction, parse_count, set_threads
from trionet_dsl.space.loader import load_any
from trionet_dsl.space.resolve import ResolvedSpace

if TYPE_CHECKING:
    from trionet_dsl.train.config import TrainConfig
    from trionet_dsl.train.loop import EpochMetrics


def train_job(
    file: str | Path,
    data: str,
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    val_fraction: float = 0.2,
    space: str | Path | None = None,
    stop_after_epoch: int | None = None,
    val_data: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    max_memory: str | int | None = None,
    device: str = "auto",
    save_every: int | None = None,
    steps: int | None = None,
) -> list[EpochMetrics]:
    """Train the supernet of a `.space` file, or an `.arch` from scratch (see ``train.loop.train``
    for ``device``, ``save_every`` and ``steps``)."""
    from trionet_dsl.train.device import check_precision, resolve_device
    from trionet_dsl.train.distributed import cleanup
    from trionet_dsl.train.loop import check_out_dir, train

    set_threads(threads)
    check_out_dir(Path(out))
    check_precision(cfg.precision, resolve_device(device))  # before the data is loaded
    check_val_fraction(val_fraction)
    target = load_any(file, space)
    rs = target if isinstance(target, ResolvedSpace) else target.space
    bundle = load_dataset(data, rs, val_fraction, cfg.seed, val_source=val_data)
    try:
        return train(
            target,
            bundle,
            cfg,
            out,
            resume=resume,
            progress=progress,
            stop_after_epoch=stop_after_epoch,
            overwrite=overwrite,
            max_memory=parse_count(max_memory, "--max-memory"),
            device=device,
            save_every=save_every,
            steps=steps,
        )
    finally:
        cleanup()  # a torchrun worker leaves its process group before it exits


def worker_argv(argv: list[str]) -> list[str]:
    """The ``train ...`` command line each torchrun worker runs: ``argv`` without ``--nproc N``."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch_train(
    nproc: int,
    argv: list[str],
    file: str | Path,
    cfg: TrainConfig,
    out: str | Path,
    resume: bool,
    overwrite: bool,
    device: str,
    space: str | Path | None = None,
) -> int:
    """``trionet train ... --nproc N``: start N workers on this machine through torchrun's own
    engine (``torch.distributed.run``, a standalone c10d rendezvous) and wait for them; returns the
    exit status (the first failed worker's). What can be checked cheaply is checked here first,
    so bad input is one message, not one per worker."""
    import torch
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from trionet_dsl.lang.errors import SpaceError
    from trionet_dsl.train.device import check_precision, resolve_device
    from trionet_dsl.train.distributed import launched, local_batch
    from trionet_dsl.train.loop import check_out_dir

    if nproc < 1:
        raise SpaceError(f"--nproc {nproc} must be at least 1")
    if launched():
        raise SpaceError("--nproc inside a torchrun worker", hint="give either --nproc or torchrun, not both")
    check_out_dir(Path(out))
    dev = resolve_device(device)
    check_precision(cfg.precision, dev)
    if dev.type == "cuda" and nproc > torch.cuda.device_count():
        raise SpaceError(
            f"--nproc {nproc} but {torch.cuda.device_count()} GPU(s) are visible",
            hint="one process per GPU: lower --nproc, or use --device cpu",
        )
    local_batch(cfg.batch_size, nproc)
    target = load_any(file, space)  # a syntax error is reported once, here
    name = "supernet.pt" if isinstance(target, ResolvedSpace) else "model.pt"
    if not resume and not overwrite and (Path(out) / name).exists():
        raise SpaceError(
            f"--out {out} already holds a run ({name})",
            file=str(out),
            hint="continue it with --resume, start over with --overwrite, or give another --out",
        )
    if "train" not in argv:
        raise SpaceError("--nproc works from the command line", hint="from Python, start the workers with torchrun")
    args = torchrun.get_args_parser().parse_args(
        ["--standalone", f"--nproc_per_node={nproc}", "--module", "trionet_dsl", *worker_argv(argv)]
    )
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return failure.exitcode or 1
    return 0

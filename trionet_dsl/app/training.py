"""``trionet train``: a `.space` trains its supernet, an `.arch` trains from scratch; ``--nproc N``
starts N data-parallel workers through torchrun's engine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.app.options import check_val_fraction, parse_count, parse_size, set_threads
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
    tensorboard: str | Path | None = None,
    workers: int = 0,
    image_size: str | int | None = None,
    mean: str | None = None,
    std: str | None = None,
    compile_mode: str = "off",
    compile_backend: str = "inductor",
) -> list[EpochMetrics]:
    """Train the supernet of a `.space` file, or an `.arch` from scratch (see ``train.loop.train``
    for ``device``, ``save_every``, ``steps`` and ``tensorboard``). ``workers``: DataLoader processes
    decoding an image folder; ``image_size`` ("S" or "HxW", at most the space's input);
    ``mean``/``std``: comma-separated per-channel values or ``imagenet`` (default: from the training
    split). ``compile_mode``/``compile_backend``: ``torch.compile`` of an arch's training steps
    (a supernet is refused before the data is loaded; see :mod:`trionet_dsl.train.compiling`)."""
    from trionet_dsl.train.compiling import check_compile_mode, refuse_supernet
    from trionet_dsl.train.device import check_precision, resolve_device
    from trionet_dsl.train.distributed import cleanup
    from trionet_dsl.train.loop import check_out_dir, train

    set_threads(threads)
    check_out_dir(Path(out))
    check_precision(cfg.precision, resolve_device(device))  # before the data is loaded
    check_val_fraction(val_fraction)
    check_compile_mode(compile_mode)
    if tensorboard is not None:
        from trionet_dsl.train.metric_sinks import require_tensorboard

        require_tensorboard()  # before the data is loaded
    target = load_any(file, space)
    if isinstance(target, ResolvedSpace):
        refuse_supernet(compile_mode, str(file))  # before the data is loaded
    rs = target if isinstance(target, ResolvedSpace) else target.space
    from trionet_dsl.train.data.stats import parse_stats

    given_mean, given_std = parse_stats(mean, std, rs.space.input.channels)
    bundle = load_dataset(
        data,
        rs,
        val_fraction,
        cfg.seed,
        val_source=val_data,
        image_size=parse_size(image_size),
        mean=given_mean,
        std=given_std,
        workers=workers,
    )
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
            tensorboard=tensorboard,
            compile_mode=compile_mode,
            compile_backend=compile_backend,
        )
    finally:
        bundle.close()  # DataLoader workers stop with the run
        cleanup()  # a torchrun worker leaves its process group before it exits


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
    compile_mode: str = "off",
) -> int | None:
    """``trionet train ... --nproc N``: check what can be checked cheaply (so bad input is one
    message, not one per worker), then run the command line under torchrun in N processes
    (:func:`trionet_dsl.app.launch.relaunch`); its exit status, or None for ``--nproc 1``
    (this process trains itself)."""
    import torch

    from trionet_dsl.app.launch import relaunch
    from trionet_dsl.lang.errors import SpaceError
    from trionet_dsl.train.compiling import check_compile_mode, refuse_supernet
    from trionet_dsl.train.device import check_precision, resolve_device
    from trionet_dsl.train.distributed import local_batch
    from trionet_dsl.train.loop import check_out_dir

    check_out_dir(Path(out))
    dev = resolve_device(device)
    check_precision(cfg.precision, dev)
    if dev.type == "cuda" and nproc > torch.cuda.device_count():
        raise SpaceError(
            f"--nproc {nproc} but {torch.cuda.device_count()} GPU(s) are visible",
            hint="one process per GPU: lower --nproc, or use --device cpu",
        )
    local_batch(cfg.batch_size, max(1, nproc))
    check_compile_mode(compile_mode)
    target = load_any(file, space)  # a syntax error is reported once, here
    if isinstance(target, ResolvedSpace):
        refuse_supernet(compile_mode, str(file))  # once, not once per worker
    name = "supernet.pt" if isinstance(target, ResolvedSpace) else "model.pt"
    if not resume and not overwrite and (Path(out) / name).exists():
        raise SpaceError(
            f"--out {out} already holds a run ({name})",
            file=str(out),
            hint="continue it with --resume, start over with --overwrite, or give another --out",
        )
    return relaunch(nproc, argv)

"""``trionet train``: a `.space` trains its supernet, an `.arch` trains from scratch."""

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
) -> list[EpochMetrics]:
    """Train the supernet of a `.space` file, or an `.arch` from scratch (see ``train.loop.train``
    for ``device``, ``save_every``, ``steps`` and ``tensorboard``). ``workers``: DataLoader processes
    decoding an image folder; ``image_size`` ("S" or "HxW", at most the space's input);
    ``mean``/``std``: comma-separated per-channel values or ``imagenet`` (default: from the training
    split)."""
    from trionet_dsl.train.device import check_precision, resolve_device
    from trionet_dsl.train.loop import check_out_dir, train

    set_threads(threads)
    check_out_dir(Path(out))
    check_precision(cfg.precision, resolve_device(device))  # before the data is loaded
    check_val_fraction(val_fraction)
    if tensorboard is not None:
        from trionet_dsl.train.metric_sinks import require_tensorboard

        require_tensorboard()  # before the data is loaded
    target = load_any(file, space)
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
        )
    finally:
        bundle.close()  # DataLoader workers stop with the run

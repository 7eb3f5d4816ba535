"""Which data a job uses: a named/file dataset fitted to a space, or the data a checkpoint
was trained on, split exactly as in training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trionet_dsl.app.options import check_val_fraction
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.space.resolve import ResolvedSpace

if TYPE_CHECKING:
    from trionet_dsl.train.data import DataBundle


def load_dataset(
    source: str,
    space: ResolvedSpace,
    val_fraction: float = 0.2,
    seed: int = 0,
    val_source: str | None = None,
    *,
    image_size: int | tuple[int, int] | list[int] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    workers: int = 0,
) -> DataBundle:
    """The data bundle for a space: images at its input size (or a smaller ``image_size``), split
    and normalised (``mean``/``std`` given, else from the training split); image folders stream
    through ``workers`` DataLoader processes."""
    from trionet_dsl.train.data import DataConfig, load_data

    check_val_fraction(val_fraction)
    i = space.space.input
    size = image_size_for(space, image_size)
    cfg = DataConfig(
        source=source,
        val_fraction=val_fraction,
        val_source=val_source,
        image_size=size,
        channels=i.channels,
        seed=seed,
        max_classes=space.space.classes,
        mean=mean,
        std=std,
    )
    bundle = load_data(cfg, workers=workers)
    if bundle.num_classes > space.space.classes:
        raise SpaceError(
            f"the data has {bundle.num_classes} classes but space '{space.name}' has classes {space.space.classes}",
            hint=f"set 'classes {bundle.num_classes}' in the space",
        )
    return bundle


def image_size_for(space: ResolvedSpace, image_size: int | tuple[int, int] | list[int] | None) -> tuple[int, int]:
    """``--image-size``: the space's input size by default; smaller is allowed (the network is
    convolutional and its attention slices its relative positions), larger is refused (axial
    attention's positions are sized to the space's input)."""
    i = space.space.input
    if image_size is None:
        return (i.height, i.width)
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if not (1 <= h <= i.height and 1 <= w <= i.width):
        raise SpaceError(
            f"--image-size {h}x{w} does not fit space '{space.name}', whose input is {i.channels}x{i.height}x{i.width}",
            hint=f"use at most {i.height} (or change the space's 'input' line)",
        )
    return (h, w)


def checkpoint_data(
    ck: dict,
    space: ResolvedSpace,
    checkpoint: str | Path,
    data: str | None = None,
    val_fraction: float | None = None,
    val_data: str | None = None,
    force: bool = False,
    workers: int = 0,
) -> tuple[DataBundle, str]:
    """The data a checkpoint was trained on, split as in training (same fraction and seed).

    Search, export and rank evaluate on it by default. Options that name other data are
    refused unless ``force`` (another split would put training images into validation);
    returns ``(bundle, description)``.
    """
    from trionet_dsl.train.data import source_id

    rec = ck.get("data") or {}
    has_record = "seed" in rec and rec.get("source")
    if not has_record and data is None:
        raise SpaceError(
            f"{checkpoint} does not record the data it was trained on",
            file=str(checkpoint),
            hint="pass --data (and --val-fraction / --val) as given to `trionet train`",
        )
    seed = rec.get("seed", ck.get("config", {}).get("seed", 0))
    rec_fraction = rec.get("val_fraction") if has_record else None
    if has_record and not force:
        asked = {
            "--data": (source_id(data), rec["source"]) if data is not None else None,
            "--val": (source_id(val_data), rec.get("val_source")) if val_data is not None else None,
            "--val-fraction": (val_fraction, rec_fraction) if val_fraction is not None else None,
        }
        for opt, pair in asked.items():
            if pair is not None and pair[0] != pair[1]:
                raise SpaceError(
                    f"{opt} {pair[0]} differs from the checkpoint's training data ({opt} {pair[1]})",
                    file=str(checkpoint),
                    hint="leave it out to evaluate on the training run's validation split, or add "
                    "--force to evaluate on other data",
                )
    source = data if data is not None else rec["source"]
    vsource = val_data if val_data is not None else (rec.get("val_source") if has_record else None)
    fraction = val_fraction if val_fraction is not None else (rec_fraction or 0.2)
    from trionet_dsl.train.data.sources import NAMED_SOURCES

    if source not in NAMED_SOURCES and not Path(source).exists():
        raise SpaceError(
            f"the checkpoint's training data {source} is not there any more",
            file=str(checkpoint),
            hint="pass --data PATH --force to evaluate on a copy of it",
        )
    streamed = bool(rec.get("streamed")) and source_id(source) == rec.get("source")
    bundle = load_dataset(
        source,
        space,
        fraction,
        seed,
        val_source=vsource,
        image_size=rec.get("image_size"),
        # a streamed set's statistics were estimated on a subset: reuse them, not a new estimate
        mean=rec.get("mean") if streamed else None,
        std=rec.get("std") if streamed else None,
        workers=workers,
    )
    if bundle.extra.get("val_tree"):
        split = f"{bundle.extra['layout']} layout"
    else:
        split = f"--val {vsource}" if vsource else f"val-fraction {fraction}, split seed {seed}"
    return bundle, f"{source} ({split}): {len(bundle.val_y)} validation images"

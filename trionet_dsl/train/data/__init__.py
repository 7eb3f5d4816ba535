"""Datasets for training and search: load once into memory, split, normalise, iterate.

The whole set lives in memory as tensors (the shipped and typical search datasets are
small), so an epoch is a seeded permutation plus batch-wise augmentation — no DataLoader
workers, and batch ``t`` of epoch ``e`` is the same in every run with the same seed.
Normalisation (per-channel mean/std) comes from the training split only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import BaseModel, Field

from trionet_dsl.lang.errors import SpaceError, did_you_mean
from trionet_dsl.train.data.sources import NAMED_SOURCES, load_folder, load_npz
from trionet_dsl.train.data.transforms import adapt_channels, resize
from trionet_dsl.train.data.transforms import augment as augment_batch


class DataConfig(BaseModel):
    source: str
    val_fraction: float = Field(0.2, gt=0, lt=1)
    val_source: str | None = None
    image_size: tuple[int, int] = (32, 32)
    channels: int = 3
    seed: int = 0
    flip: bool | None = None  # None: on for photos, off for digits (a flipped 2 is not a 2)
    max_classes: int | None = None  # the space's classes: larger labels are refused before any allocation
    layout: str | None = None  # npz: "nchw" / "nhwc" to override detection


@dataclass
class DataBundle:
    """Normalised train/val tensors plus what is needed to reapply the preprocessing."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    class_names: list[str]
    mean: list[float]
    std: list[float]
    flip: bool
    pad: int
    source: str = ""
    extra: dict = field(default_factory=dict)
    config: DataConfig | None = None
    val_raw: torch.Tensor | None = None  # the validation images before normalisation, in [0, 1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def meta(self) -> dict:
        """What a checkpoint records, so search/export/rank can rebuild exactly this split."""
        cfg = self.config
        out = {
            "source": self.source,
            "mean": self.mean,
            "std": self.std,
            "classes": self.class_names,
            "train": len(self.train_y),
            "val": len(self.val_y),
        }
        if cfg is not None:
            out |= {
                "source": source_id(cfg.source),
                "val_source": source_id(cfg.val_source),
                "val_fraction": None if cfg.val_source else cfg.val_fraction,
                "seed": cfg.seed,
                "image_size": list(cfg.image_size),
                "channels": cfg.channels,
            }
        return out


def source_id(source: str | None) -> str | None:
    """A data source as a checkpoint records it: named sets by name, files by absolute path."""
    if source is None or source in NAMED_SOURCES:
        return source
    return str(Path(source).expanduser().resolve())


def _read(source: str, cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if source in NAMED_SOURCES:
        x, y, names = NAMED_SOURCES[source]()
    else:
        p = Path(source)
        if p.is_dir():
            imgs, y, names = load_folder(p, cfg.channels)
            x = torch.stack([resize(adapt_channels(i[None], cfg.channels), cfg.image_size)[0] for i in imgs])
            return x, y, names
        if p.suffix == ".npz" and p.is_file():
            x, y, names = load_npz(p, cfg.layout, cfg.max_classes)
        elif not p.exists():
            hint = did_you_mean(source, NAMED_SOURCES) if "/" not in source and "." not in source else None
            raise SpaceError(
                f"data source '{source}' is neither a known dataset nor an existing path",
                hint=hint or "use 'digits', 'mnist5k', a .npz file, or a folder root/<class>/<image>",
            )
        else:
            raise SpaceError(f"cannot use {source} as data", hint="use a .npz file or an image folder")
    if x.shape[1] != cfg.channels and not (x.shape[1] == 1 or (x.shape[1] == 3 and cfg.channels == 1)):
        raise SpaceError(
            f"{source} has {x.shape[1]}-channel images but the space's input has {cfg.channels} channels",
            hint="grey (1) and RGB (3) images convert into each other; set the space's input channels to match",
        )
    return resize(adapt_channels(x, cfg.channels), cfg.image_size), y, names


def _split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified: each class keeps ``fraction`` of its samples (at least one) for validation."""
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = max(1, round(len(idx) * fraction))
        if k >= len(idx):
            raise SpaceError(
                f"class {int(c)} has {len(idx)} sample(s): too few to split off validation data",
                hint="lower --val-fraction or give a separate validation set",
            )
        val.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def load_data(cfg: DataConfig) -> DataBundle:
    """Read, resize, split and normalise a dataset as ``cfg`` says."""
    x, y, names = _read(cfg.source, cfg)
    if cfg.val_source:
        vx, vy, vnames = _read(cfg.val_source, cfg)
        if vnames != names:
            raise SpaceError(
                "the validation set's classes differ from the training set's",
                hint=f"train: {names[:5]}..., val: {vnames[:5]}...",
            )
        tx, ty = x, y
    else:
        ti, vi = _split(y, cfg.val_fraction, cfg.seed)
        tx, ty, vx, vy = x[ti], y[ti], x[vi], y[vi]
    if len(names) < 2:
        raise SpaceError(f"{cfg.source} has {len(names)} class(es); classification needs at least 2")
    if int(y.max()) >= len(names):
        raise SpaceError(f"labels go up to {int(y.max())} but there are {len(names)} classes")
    mean = tx.mean(dim=(0, 2, 3))
    std = tx.std(dim=(0, 2, 3)).clamp_min(1e-6)

    def norm(t: torch.Tensor) -> torch.Tensor:
        return ((t - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)).contiguous()

    flip = cfg.flip if cfg.flip is not None else cfg.source not in NAMED_SOURCES
    pad = max(1, min(cfg.image_size) // 8)
    return DataBundle(
        norm(tx),
        ty,
        norm(vx),
        vy,
        names,
        mean.tolist(),
        std.tolist(),
        flip,
        pad,
        cfg.source,
        config=cfg,
        val_raw=vx.contiguous(),
    )


def iterate(
    bundle: DataBundle,
    split: str,
    batch_size: int,
    epoch: int,
    seed: int,
    augment: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of one epoch; the order and augmentation depend only on (seed, epoch)."""
    x, y = (bundle.train_x, bundle.train_y) if split == "train" else (bundle.val_x, bundle.val_y)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(y), generator=gen) if split == "train" else torch.arange(len(y))
    stop = len(y) - (len(y) % batch_size if drop_last else 0)
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        if len(idx) == 0:
            break
        xb = x[idx]
        if augment and split == "train":
            # crops pad with zeros of the normalised data, i.e. with the training mean
            xb = augment_batch(xb, gen, bundle.pad, bundle.flip)
        yield xb, y[idx]


__all__ = ["DataBundle", "DataConfig", "iterate", "load_data", "source_id"]

"""Datasets for training and search: one interface over in-memory sets and streamed folders.

Small sets (digits, mnist5k, ``.npz``) are loaded once, resized and normalised as tensors;
image folders in the ImageNet layout are indexed and decoded lazily, batch by batch, by
DataLoader workers (``workers``) with the ImageNet recipe. Either way a bundle is two
:class:`~.samples.Samples` splits and :func:`iterate` gives an epoch's batches: the order is a
permutation seeded by ``(seed, epoch)``, augmentation is seeded per sample by ``(seed, epoch,
index)``, so batch ``t`` of epoch ``e`` is the same in every run with the same seed, whatever
the number of workers or processes (:func:`shard_indices` gives a rank its share of a batch).
Normalisation statistics come from the training split only (estimated on a seeded subset for
folders) or are given.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from trionet_dsl.lang.errors import SpaceError, did_you_mean
from trionet_dsl.train.data.folders import DataWarning, FolderIndex, imagenet_layout, index_folder
from trionet_dsl.train.data.loading import WorkerPool, batch_keys, epoch_order, run_pass, shard_indices
from trionet_dsl.train.data.samples import FolderSamples, Samples, TensorSamples
from trionet_dsl.train.data.sources import NAMED_SOURCES, load_npz
from trionet_dsl.train.data.stats import estimate_stats
from trionet_dsl.train.data.transforms import adapt_channels, resize


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
    mean: list[float] | None = None  # given normalisation (per channel, pixels in [0, 1]); None: from the data
    std: list[float] | None = None
    stats_images: int = Field(1000, ge=1)  # folders: training images the statistics are estimated on
    verify: bool | None = None  # folders: read every header first (None: when at most VERIFY_MAX files)


@dataclass
class DataBundle:
    """A dataset's two splits, its classes and the normalisation that was applied.

    ``train``/``val`` are :class:`Samples` (in memory or streamed); ``train_x``, ``val_x`` and
    ``val_raw`` are the tensors of an in-memory bundle (a streamed one has none: use
    :func:`iterate`). ``workers``: DataLoader processes decoding a streamed bundle's batches
    (0: in this process); it changes speed, never the batches.
    """

    train: Samples
    val: Samples
    class_names: list[str]
    mean: list[float]
    std: list[float]
    flip: bool
    source: str = ""
    extra: dict = field(default_factory=dict)
    config: DataConfig | None = None
    workers: int = 0
    pool: WorkerPool | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_tensors(
        cls,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        val_x: torch.Tensor,
        val_y: torch.Tensor,
        class_names: list[str] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        flip: bool = False,
        pad: int = 1,
        val_raw: torch.Tensor | None = None,
        **kw: object,
    ) -> DataBundle:
        """An in-memory bundle of normalised tensors (``val_raw``: the validation images in [0, 1])."""
        c = train_x.shape[1]
        mean = mean if mean is not None else [0.0] * c
        std = std if std is not None else [1.0] * c
        names = class_names if class_names is not None else [str(k) for k in range(int(train_y.max()) + 1)]
        return cls(
            TensorSamples(train_x, train_y, pad, flip, None, mean, std),
            TensorSamples(val_x, val_y, pad, flip, val_raw, mean, std),
            names,
            mean,
            std,
            flip,
            **kw,  # type: ignore[arg-type]
        )

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, FolderSamples)

    def _tensors(self, samples: Samples) -> TensorSamples:
        if not isinstance(samples, TensorSamples):
            raise SpaceError(
                f"{self.source} is streamed from files: it has no in-memory tensors", hint="use iterate(...)"
            )
        return samples

    @property
    def train_x(self) -> torch.Tensor:
        return self._tensors(self.train).x

    @property
    def val_x(self) -> torch.Tensor:
        return self._tensors(self.val).x

    @property
    def val_raw(self) -> torch.Tensor | None:
        return self.val.raw if isinstance(self.val, TensorSamples) else None

    @property
    def train_y(self) -> torch.Tensor:
        return self.train.labels

    @property
    def val_y(self) -> torch.Tensor:
        return self.val.labels

    @property
    def pad(self) -> int:
        return self.train.pad if isinstance(self.train, TensorSamples) else 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_val(self) -> int:
        return len(self.val)

    def worker_pool(self) -> WorkerPool | None:
        """The bundle's DataLoader workers (started on first use), or None: batches made in this process."""
        if self.workers < 1 or not self.streamed:
            return None
        if self.pool is None:
            self.pool = WorkerPool(self.train, self.val, self.workers)
        return self.pool

    def close(self) -> None:
        """Stop the DataLoader workers, if any were started."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def meta(self) -> dict:
        """What a checkpoint records, so search/export/rank can rebuild exactly this split."""
        cfg = self.config
        out = {
            "source": self.source,
            "mean": self.mean,
            "std": self.std,
            "classes": self.class_names,
            "train": self.num_train,
            "val": self.num_val,
        }
        if cfg is not None:
            out |= {
                "source": source_id(cfg.source),
                "val_source": source_id(cfg.val_source),
                "val_fraction": None if self.extra.get("val_tree") or cfg.val_source else cfg.val_fraction,
                "seed": cfg.seed,
                "image_size": list(cfg.image_size),
                "channels": cfg.channels,
            }
        if self.streamed:
            out |= {k: self.extra[k] for k in ("streamed", "layout", "normalisation", "skipped_files")}
        return out


def source_id(source: str | None) -> str | None:
    """A data source as a checkpoint records it: named sets by name, files by absolute path."""
    if source is None or source in NAMED_SOURCES:
        return source
    return str(Path(source).expanduser().resolve())


def is_folder(source: str | None) -> bool:
    return source is not None and source not in NAMED_SOURCES and Path(source).is_dir()


def _read(source: str, cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if source in NAMED_SOURCES:
        x, y, names = NAMED_SOURCES[source]()
    else:
        p = Path(source)
        if p.suffix == ".npz" and p.is_file():
            x, y, names = load_npz(p, cfg.layout, cfg.max_classes)
        elif not p.exists():
            hint = did_you_mean(source, NAMED_SOURCES) if "/" not in source and "." not in source else None
            raise SpaceError(
                f"data source '{source}' is neither a known dataset nor an existing path",
                hint=hint or "use 'digits', 'mnist5k', a .npz file, or a folder DIR/<class>/<image>",
            )
        elif p.is_dir():
            raise SpaceError(
                f"{source} is an image folder but the training data is not",
                hint="--data and --val must both be folders, or both arrays (named sets, .npz)",
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


def _given_stats(cfg: DataConfig) -> tuple[list[float], list[float]] | None:
    if cfg.mean is None and cfg.std is None:
        return None
    if cfg.mean is None or cfg.std is None or len(cfg.mean) != cfg.channels or len(cfg.std) != cfg.channels:
        raise SpaceError(
            f"normalisation needs {cfg.channels} mean and {cfg.channels} std values, got {cfg.mean} and {cfg.std}"
        )
    if min(cfg.std) <= 0:
        raise SpaceError(f"std values must be positive, got {cfg.std}")
    return list(cfg.mean), list(cfg.std)


def _load_folders(cfg: DataConfig, workers: int) -> DataBundle:
    """Index (no decoding) an ImageNet-layout folder, split it, and settle the normalisation."""
    if cfg.val_source is not None and not is_folder(cfg.val_source):
        raise SpaceError(
            f"--val {cfg.val_source} is not a folder but the training data is",
            hint="--data and --val must both be folders, or both arrays (named sets, .npz)",
        )
    train_root, val_root = imagenet_layout(cfg.source)
    layout = "train/val" if val_root is not None else ("train" if train_root != Path(cfg.source) else "tree")
    if cfg.val_source is not None:
        val_root, layout = Path(cfg.val_source), layout + " + --val"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        train = index_folder(train_root, verify=cfg.verify)
        val: FolderIndex
        if val_root is not None:
            val = index_folder(val_root, classes=train.classes, verify=cfg.verify)
        else:
            ti, vi = _split(torch.from_numpy(train.labels), cfg.val_fraction, cfg.seed)
            train, val = train.subset(ti.numpy()), train.subset(vi.numpy())
    for w in caught:  # re-issued here, once each, so the caller's filters decide what is shown
        warnings.warn(w.message, DataWarning, stacklevel=3)
    if cfg.max_classes is not None and len(train.classes) > cfg.max_classes:
        raise SpaceError(
            f"{cfg.source} has {len(train.classes)} classes but the space has {cfg.max_classes}",
            hint=f"set 'classes {len(train.classes)}' in the space",
        )
    flip = cfg.flip if cfg.flip is not None else True
    given = _given_stats(cfg)
    if given is not None:
        mean, std = given
        normalisation = "given"
    else:
        probe = FolderSamples(train, cfg.image_size, cfg.channels, [0.0] * cfg.channels, [1.0] * cfg.channels, flip)

        def pixels(i: int) -> np.ndarray:
            try:
                return probe.pixels(i, None)
            except Exception as exc:  # a file Pillow could not decode
                raise SpaceError(f"cannot decode image {train.path(i)}: {exc}", file=train.path(i)) from None

        mean, std = estimate_stats(pixels, len(train.labels), cfg.stats_images, cfg.seed, cfg.channels)
        normalisation = f"estimated on {min(cfg.stats_images, len(train.labels))} training images (seed {cfg.seed})"
    return DataBundle(
        FolderSamples(train, cfg.image_size, cfg.channels, mean, std, flip),
        FolderSamples(val, cfg.image_size, cfg.channels, mean, std, flip),
        list(train.classes),
        mean,
        std,
        flip,
        cfg.source,
        extra={
            "streamed": True,
            "layout": layout,
            "normalisation": normalisation,
            "skipped_files": train.skipped + (val.skipped if val_root is not None else 0),
            "val_tree": val_root is not None,
        },
        config=cfg,
        workers=workers,
    )


def load_data(cfg: DataConfig, workers: int = 0) -> DataBundle:
    """Read (in memory) or index (a folder, streamed), split and normalise a dataset as ``cfg`` says."""
    if workers < 0:
        raise SpaceError(f"--workers {workers} must be 0 (decode in the training process) or more")
    if is_folder(cfg.source):
        return _load_folders(cfg, workers)
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
    given = _given_stats(cfg)
    if given is not None:
        mean, std = torch.tensor(given[0]), torch.tensor(given[1])
    else:
        mean = tx.mean(dim=(0, 2, 3))
        std = tx.std(dim=(0, 2, 3)).clamp_min(1e-6)

    def norm(t: torch.Tensor) -> torch.Tensor:
        return ((t - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)).contiguous()

    flip = cfg.flip if cfg.flip is not None else cfg.source not in NAMED_SOURCES
    pad = max(1, min(cfg.image_size) // 8)
    return DataBundle.from_tensors(
        norm(tx),
        ty,
        norm(vx),
        vy,
        names,
        mean.tolist(),
        std.tolist(),
        flip,
        pad,
        vx.contiguous(),
        source=cfg.source,
        config=cfg,
    )


def iterate(
    bundle: DataBundle,
    split: str,
    batch_size: int,
    epoch: int,
    seed: int,
    augment: bool = True,
    drop_last: bool = False,
    *,
    start: int = 0,
    rank: int = 0,
    world: int = 1,
    limit: int | None = None,
    normalise: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``start, start+1, ...`` of one pass over ``split``: training shuffled by ``(seed, epoch)``
    and augmented per sample, validation in order and plain (``limit``: its first samples only).

    ``rank``/``world``: this process's :func:`shard_indices` of each global batch. ``normalise``
    False gives pixels in [0, 1] (an exported model's input / 255). The batches do not depend on
    ``bundle.workers``.
    """
    samples = bundle.train if split == "train" else bundle.val
    keys = batch_keys(samples, split, batch_size, epoch, seed, augment, drop_last, start, rank, world, limit, normalise)
    return run_pass(samples, keys, bundle.worker_pool())


__all__ = [
    "DataBundle",
    "DataConfig",
    "DataWarning",
    "epoch_order",
    "is_folder",
    "iterate",
    "load_data",
    "shard_indices",
    "source_id",
]

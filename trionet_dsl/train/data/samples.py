"""One split of a dataset as a ``torch.utils.data.Dataset`` whose items are whole batches.

An item is asked for by a :class:`BatchKey` — the split, the sample indices, the epoch, the
seed, whether to augment — so a DataLoader worker needs no state of its own: the same key
gives the same batch in any process. Augmentation randomness is drawn per sample from
``random.Random(f"{seed}/{epoch}/{index}")`` (the loop seeds sub-networks the same way), so
a sample's crop and flip do not depend on the number of workers or processes, nor on the
other samples of its batch.

Two kinds behind one interface: :class:`TensorSamples` holds a small set in memory
(digits, mnist5k, npz: normalised once, shifted-crop + flip augmentation done on the whole
batch tensor at once); :class:`FolderSamples` decodes files as they are asked for (the
ImageNet recipe of :mod:`.recipe`). A worker returns ``load(key)``, the final float batch: the
training process then allocates nothing per batch (converting uint8 batches there instead made
glibc's heap grow by ~200 MB over a 20,000-image epoch, see ``benchmarks/data_rss.py``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from trionet_dsl.train.data.folders import FolderIndex
from trionet_dsl.train.data.recipe import load_image, train_view, val_view
from trionet_dsl.train.data.transforms import augment as shift_and_flip


class BatchKey(NamedTuple):
    """What one batch is: everything a worker needs to make it, and nothing else."""

    split: str  # "train" | "val"
    indices: torch.Tensor  # int64 sample indices within the split
    epoch: int
    seed: int
    augment: bool
    normalise: bool = True  # False: pixel values in [0, 1] (what an exported model's users feed, / 255)


@dataclass(frozen=True)
class LoadFailure:
    """A file that could not be decoded: sent back by a worker, raised as a SpaceError by the caller."""

    path: str
    reason: str


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The augmentation randomness of sample ``index`` in ``epoch``: the same in every process."""
    return random.Random(f"{seed}/{epoch}/{index}")


class Samples(Dataset):
    """A split: its labels, and batches made on request (see :class:`BatchKey`)."""

    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, key: BatchKey) -> tuple[torch.Tensor, torch.Tensor] | LoadFailure:
        raise NotImplementedError

    def __getitem__(self, key: BatchKey) -> tuple[torch.Tensor, torch.Tensor] | LoadFailure:
        return self.load(key)


class TensorSamples(Samples):
    """A split held in memory, already resized and normalised (``raw``: the same in [0, 1])."""

    def __init__(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        pad: int,
        flip: bool,
        raw: torch.Tensor | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        self.x, self.labels, self.pad, self.flip, self.raw = x, labels, pad, flip, raw
        c = x.shape[1] if x.ndim == 4 else 1
        self._mean = torch.tensor(mean if mean is not None else [0.0] * c).view(1, -1, 1, 1)
        self._std = torch.tensor(std if std is not None else [1.0] * c).view(1, -1, 1, 1)

    def draws(self, key: BatchKey) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample crop offsets (0 .. 2 pad) and flips, from each sample's own generator."""
        dy, dx, fl = [], [], []
        for i in key.indices.tolist():
            rng = sample_rng(key.seed, key.epoch, i)
            dy.append(rng.randint(0, 2 * self.pad))
            dx.append(rng.randint(0, 2 * self.pad))
            fl.append(self.flip and rng.random() < 0.5)
        return torch.tensor(dy, dtype=torch.long), torch.tensor(dx, dtype=torch.long), torch.tensor(fl)

    def load(self, key: BatchKey) -> tuple[torch.Tensor, torch.Tensor]:
        idx = key.indices
        if key.normalise:
            xb = self.x[idx]
        else:
            xb = self.raw[idx] if self.raw is not None else self.x[idx] * self._std + self._mean
        if key.augment:
            # crops pad with zeros of the normalised data, i.e. with the training mean
            xb = shift_and_flip(xb, *self.draws(key), self.pad)
        return xb, self.labels[idx]


class FolderSamples(Samples):
    """A split read from files as batches are asked for; nothing decoded is kept."""

    def __init__(
        self, index: FolderIndex, size: tuple[int, int], channels: int, mean: list[float], std: list[float], flip: bool
    ) -> None:
        self.index, self.size, self.flip = index, size, flip
        self.channels = channels
        self.mode = "L" if channels == 1 else "RGB"
        self.labels = torch.from_numpy(index.labels)
        self.mean = list(mean)
        self.std = list(std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self._std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0

    def pixels(self, i: int, rng: random.Random | None) -> np.ndarray:
        """Sample ``i`` as ``H x W x C`` uint8: the training recipe with ``rng``, the validation one without."""
        img = load_image(self.index.path(i), self.mode)
        h, w = self.size
        arr = train_view(img, h, w, rng, self.flip) if rng is not None else val_view(img, h, w)
        return arr.reshape(h, w, self.channels)

    def load(self, key: BatchKey) -> tuple[torch.Tensor, torch.Tensor] | LoadFailure:
        h, w = self.size
        out = np.empty((len(key.indices), h, w, self.channels), dtype=np.uint8)
        for k, i in enumerate(key.indices.tolist()):
            try:
                out[k] = self.pixels(i, sample_rng(key.seed, key.epoch, i) if key.augment else None)
            except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError...
                return LoadFailure(self.index.path(i), str(exc) or type(exc).__name__)
        x = torch.from_numpy(out).permute(0, 3, 1, 2).float()  # N x C x H x W, channels-last in memory
        x = x.div_(255.0) if not key.normalise else x.sub_(self._mean).div_(self._std)
        return x.contiguous(), self.labels[key.indices]

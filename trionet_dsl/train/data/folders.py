"""Image folders in the ImageNet layout, indexed without decoding a pixel.

``DIR/train/<class>/*`` (+ ``DIR/val/<class>/*``), or one tree ``DIR/<class>/*`` that is split
by a seeded stratified fraction. Classes are the sorted sub-folder names (validation folders
take the training set's numbering). The index is two numpy arrays — file names as bytes and
labels — not Python lists: forked DataLoader workers then share its pages instead of copying
them as reference counts change (a list of a million ``str`` is touched, and copied, by every
worker that reads it).

Checks, all before training: a file whose suffix is not an image's is skipped and counted (a
warning names one); hidden files are ignored; a class folder with no image, a tree with fewer
than two classes, and a file that Pillow cannot identify are refused by path. Identifying
reads each header (``Image.open`` is lazy), cheap for up to :data:`VERIFY_MAX` files; above
that the headers are read as images are decoded, and a bad one stops the run naming the file.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trionet_dsl.lang.errors import SpaceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VERIFY_MAX = 100_000
"""Folders with at most this many images have every header read at indexing time."""


class DataWarning(UserWarning):
    """Something in the data was left out (e.g. non-image files); training goes on."""


@dataclass
class FolderIndex:
    """The images of one folder tree: ``root / files[i]`` has label ``labels[i]``."""

    root: str
    classes: list[str]
    files: np.ndarray  # bytes (numpy "S"), os.fsencode of the path relative to root
    labels: np.ndarray  # int64
    skipped: int = 0

    def path(self, i: int) -> str:
        return os.path.join(self.root, os.fsdecode(bytes(self.files[i])))

    def subset(self, rows: np.ndarray) -> FolderIndex:
        return FolderIndex(self.root, self.classes, self.files[rows], self.labels[rows], self.skipped)


def _subdirs(p: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(p) if e.is_dir() and not e.name.startswith("."))


def imagenet_layout(root: str | Path) -> tuple[Path, Path | None]:
    """``(train tree, val tree or None)``: ``root/train`` (+ ``root/val``) when those are all
    ``root`` holds, else ``root`` itself (one tree, to be split)."""
    r = Path(root)
    subs = _subdirs(r)
    if "train" in subs and set(subs) <= {"train", "val"}:
        return r / "train", (r / "val" if "val" in subs else None)
    return r, None


def index_folder(root: str | Path, classes: list[str] | None = None, verify: bool | None = None) -> FolderIndex:
    """Index ``root/<class>/<image>``; ``classes``: number the classes as these (a validation tree)."""
    r = Path(root)
    if not r.is_dir():
        raise SpaceError(f"{r} is not a folder", file=str(r))
    found = _subdirs(r)
    if not found:
        loose = sum(1 for e in os.scandir(r) if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
        raise SpaceError(
            f"{r} has no class sub-folders" + (f" ({loose} images lie directly in it)" if loose else ""),
            file=str(r),
            hint="expected DIR/<class>/<image> or DIR/train/<class>/<image> (+ DIR/val/<class>/<image>)",
        )
    if classes is None:
        classes = found
        if len(classes) < 2:
            raise SpaceError(
                f"{r} has {len(classes)} class folder ({classes[0]}); classification needs at least 2",
                file=str(r),
                hint="put each class's images in its own sub-folder: DIR/<class>/<image>",
            )
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise SpaceError(
                f"{r} has class folder(s) the training set lacks: {', '.join(extra[:5])}",
                file=str(r),
                hint=f"the training classes are {', '.join(classes[:5])}{'...' if len(classes) > 5 else ''}",
            )
    number = {c: k for k, c in enumerate(classes)}
    names: list[bytes] = []
    labels: list[int] = []
    skipped, example = 0, None
    for c in found:
        entries = sorted(e.name for e in os.scandir(r / c) if e.is_file() and not e.name.startswith("."))
        images = [n for n in entries if n.lower().endswith(IMAGE_SUFFIXES)]
        if len(images) < len(entries):
            skipped += len(entries) - len(images)
            example = example or str(r / c / next(n for n in entries if not n.lower().endswith(IMAGE_SUFFIXES)))
        if not images:
            raise SpaceError(
                f"class folder {r / c} holds no images",
                file=str(r / c),
                hint=f"image files end in one of {', '.join(IMAGE_SUFFIXES)}",
            )
        names += [os.fsencode(os.path.join(c, n)) for n in images]
        labels += [number[c]] * len(images)
    if skipped:
        warnings.warn(f"{r}: skipped {skipped} non-image file(s), e.g. {example}", DataWarning, stacklevel=2)
    index = FolderIndex(str(r), list(classes), np.array(names, dtype=bytes), np.array(labels, dtype=np.int64), skipped)
    if verify if verify is not None else len(names) <= VERIFY_MAX:
        check_headers(index)
    return index


def check_headers(index: FolderIndex, limit: int = 10) -> None:
    """Refuse, naming up to ``limit`` paths, files whose header Pillow cannot identify."""
    from PIL import Image

    bad: list[str] = []
    count = 0
    for i in range(len(index.files)):
        p = index.path(i)
        try:
            with Image.open(p) as im:
                if im.width < 1 or im.height < 1:
                    raise ValueError("the image has no pixels")
        except Exception as exc:  # Pillow raises many kinds for bad files
            count += 1
            if len(bad) < limit:
                bad.append(f"{p} ({str(exc) or type(exc).__name__})")
    if count:
        raise SpaceError(
            f"{count} file(s) are not readable images: " + "; ".join(bad) + ("; ..." if count > len(bad) else ""),
            file=bad[0].split(" (")[0],
            hint="remove or replace them (nothing was trained yet)",
        )

"""Generated image folders in the ImageNet layout, for tests, examples and benchmarks (no downloads).

Class ``k`` is a sinusoidal grating whose orientation and frequency depend on ``k``, tinted by
a class colour, with a random phase, contrast, offset and pixel noise per image: learnable,
yet no two images are alike. Every image comes from ``numpy.random.default_rng([seed, split,
class, i])``, so a folder is the same for the same arguments, byte for byte.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _image(k: int, classes: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = size
    angle = math.pi * k / classes
    freq = 2 * math.pi * (2 + (k % 3)) / max(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi)
    wave = np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
    tint = np.array([0.5 + 0.5 * math.cos(2 * math.pi * (k / classes + c / 3)) for c in range(3)], np.float32)
    img = 0.5 + rng.uniform(0.2, 0.45) * wave[..., None] * tint + rng.uniform(-0.1, 0.1)
    img += rng.normal(0, 0.05, (h, w, 3)).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_image_folder(
    root: str | Path,
    classes: int = 4,
    per_class: int = 10,
    size: int | tuple[int, int] = 64,
    seed: int = 0,
    val_per_class: int = 0,
    fmt: str = "JPEG",
) -> Path:
    """Write ``root/<class>/<i>.jpg`` — or, with ``val_per_class``, ``root/train/...`` and
    ``root/val/...`` — and return ``root``. ``fmt``: a Pillow format (JPEG, PNG)."""
    from PIL import Image

    if classes < 1 or per_class < 1:
        raise ValueError("make_image_folder needs at least one class and one image per class")
    hw = (size, size) if isinstance(size, int) else size
    suffix = {"JPEG": ".jpg", "PNG": ".png"}.get(fmt.upper(), "." + fmt.lower())
    base = Path(root)
    splits = [("train", per_class, 0), ("val", val_per_class, 1)] if val_per_class else [("", per_class, 0)]
    for split, count, code in splits:
        for k in range(classes):
            folder = base / split / f"class_{k:03d}" if split else base / f"class_{k:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([seed, code, k, i])
                Image.fromarray(_image(k, classes, hw, rng)).save(folder / f"{i:05d}{suffix}", fmt.upper())
    return base

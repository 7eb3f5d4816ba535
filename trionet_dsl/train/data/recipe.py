"""The standard ImageNet preprocessing, on Pillow images, one sample at a time.

Training: a random-resized crop (a box covering 8%-100% of the image's area with an aspect
ratio between 3/4 and 4/3, drawn log-uniformly, up to ten tries, else the centre with the
ratio clamped — Szegedy et al. 2015, "Going deeper with convolutions", as every ImageNet
recipe since uses it) resized to the output size, then a horizontal flip with probability
1/2. Validation: resize so the output is 87.5% of the image's shorter side (224 of 256) and
take the centre. The crop and the resize are one Pillow call (``Image.resize(box=...)``: the
antialiased filter reads only the pixels it needs, no intermediate image).

All randomness comes from the ``random.Random`` the caller passes in — one per sample,
seeded by ``(seed, epoch, index)`` — so a sample's crop does not depend on which process or
worker decodes it, or on what else is in its batch.
"""

from __future__ import annotations

import math
import random

import numpy as np

RRC_SCALE = (0.08, 1.0)
"""Area share of the random-resized crop (of the whole image)."""
RRC_RATIO = (3 / 4, 4 / 3)
"""Aspect ratio (width / height) range of the random-resized crop, drawn log-uniformly."""
CROP_FRACTION = 0.875
"""Validation: the centre crop is this share of the resized image's shorter side (224 / 256)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The usual per-channel ImageNet statistics of RGB images in [0, 1]."""


def rrc_box(
    height: int,
    width: int,
    rng: random.Random,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """``(top, left, box height, box width)`` of a random-resized crop inside a ``height x width`` image."""
    area = height * width
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(lo, hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    aspect = width / height  # no try fitted: the largest centred box whose ratio is in range
    if aspect < ratio[0]:
        w, h = width, max(1, min(height, round(width / ratio[0])))
    elif aspect > ratio[1]:
        w, h = max(1, min(width, round(height * ratio[1]))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def centre_box(height: int, width: int, out_h: int, out_w: int) -> tuple[float, float, float, float]:
    """The source box ``(left, top, right, bottom)`` that "resize to out/0.875, centre crop out" reads.

    The resized image is ``round(height * f) x round(width * f)`` with the smallest ``f`` that
    makes both sides at least ``out / 0.875``; the crop is centred in it (floor), mapped back
    to source pixels.
    """
    f = max(out_h / CROP_FRACTION / height, out_w / CROP_FRACTION / width)
    rh, rw = max(out_h, round(height * f)), max(out_w, round(width * f))
    top, left = (rh - out_h) // 2, (rw - out_w) // 2
    sy, sx = height / rh, width / rw
    return left * sx, top * sy, (left + out_w) * sx, (top + out_h) * sy


def load_image(path: str, mode: str):  # -> PIL.Image.Image
    """Decode one file in ``mode`` ("RGB" or "L"): grey, palette, RGBA, CMYK... are converted."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.convert(mode) if im.mode != mode else im.copy()


def train_view(img, out_h: int, out_w: int, rng: random.Random, flip: bool) -> np.ndarray:
    """Random-resized crop (+ flip) of a Pillow image: ``out_h x out_w (x C)`` uint8."""
    from PIL import Image

    top, left, h, w = rrc_box(img.height, img.width, rng)
    out = img.resize((out_w, out_h), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    if flip and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out)


def val_view(img, out_h: int, out_w: int) -> np.ndarray:
    """Resize + centre crop of a Pillow image: ``out_h x out_w (x C)`` uint8."""
    from PIL import Image

    box = centre_box(img.height, img.width, out_h, out_w)
    return np.asarray(img.resize((out_w, out_h), Image.Resampling.BILINEAR, box=box))

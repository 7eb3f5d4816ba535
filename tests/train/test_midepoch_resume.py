"""Checkpoints inside an epoch: ``save_every``, the ``steps`` cap, and a mid-epoch resume that
ends bit for bit where an uninterrupted run ends (same batches, same sub-networks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trionet_dsl import load, load_arch
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.train import TrainConfig, train
from trionet_dsl.train.checkpoint import load_checkpoint, save_checkpoint

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny.space"
# 90 images, val-fraction 0.2 -> 72 training images; batch 16 -> 4 steps per epoch (8 in 2 epochs)
CFG = TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=3)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    rng = np.random.default_rng(1)
    y = np.arange(90) % 3
    x = rng.integers(0, 60, size=(90, 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * c : 4 * c + 4] += 150
    npz = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(npz, x=x, y=y)
    space = load(TINY)
    data = load_dataset(str(npz), space, 0.2, seed=0)
    assert len(data.train_x) // CFG.batch_size == 4
    ref = tmp_path_factory.mktemp("ref")
    hist = train(space, data, CFG, ref, progress=False)
    return space, data, ref, hist


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _metrics(hist) -> list[tuple[float, float, float, float]]:
    return [(m.train_loss, m.train_acc, m.val_acc, m.lr) for m in hist]  # not images/s: a timing


def test_steps_cap_writes_a_mid_epoch_checkpoint(setting, tmp_path):
    space, data, _, _ = setting
    hist = train(space, data, CFG, tmp_path, progress=False, steps=3)
    ck = load_checkpoint(tmp_path / "supernet.pt")
    assert (ck["epoch"], ck["step"]) == (0, 3) and hist == []
    # three batches of 16 counted towards epoch 1's metrics, once per sub-network trained: with in-place
    # distillation (the default) the largest and the sampled one
    assert ck["epoch_sums"]["seen"] == 3 * 16 * (2 if CFG.distill else 1)
    assert not (tmp_path / "metrics.jsonl").exists()  # no epoch finished: nothing validated yet
    # the schedule was advanced by exactly three steps of the 2-epoch cosine
    assert ck["scheduler"]["last_epoch"] == 3


def test_resume_from_the_middle_of_epochs_is_bit_exact(setting, tmp_path):
    space, data, ref, ref_hist = setting
    train(space, data, CFG, tmp_path, progress=False, steps=2)  # stops inside epoch 1
    train(space, data, CFG, tmp_path, progress=False, resume=True, steps=7)  # through epoch 1, into epoch 2
    ck = load_checkpoint(tmp_path / "supernet.pt")
    assert (ck["epoch"], ck["step"]) == (1, 3)
    hist = train(space, data, CFG, tmp_path, progress=False, resume=True)
    _same_weights(ref / "supernet.pt", tmp_path / "supernet.pt")
    assert _metrics(hist) == _metrics(ref_hist)  # epoch metrics too: the running sums were resumed
    opt_a = load_checkpoint(ref / "supernet.pt")["optimizer"]["state"]
    opt_b = load_checkpoint(tmp_path / "supernet.pt")["optimizer"]["state"]
    assert all(torch.equal(opt_a[k]["momentum_buffer"], opt_b[k]["momentum_buffer"]) for k in opt_a)


def test_save_every_checkpoints_inside_epochs_without_changing_the_run(setting, tmp_path):
    space, data, ref, ref_hist = setting
    seen: list[tuple[int, int]] = []
    import trionet_dsl.train.loop as loop

    original = loop._Run.save

    def spy(self, epoch: int, step: int = 0) -> None:
        seen.append((epoch, step))
        original(self, epoch, step)

    loop._Run.save = spy  # type: ignore[method-assign]
    try:
        hist = train(space, data, CFG, tmp_path, progress=False, save_every=3)
    finally:
        loop._Run.save = original  # type: ignore[method-assign]
    # global steps 3 and 6 fall inside epochs (epoch 0 step 3, epoch 1 step 2); ends save with step 0
    assert seen == [(0, 3), (1, 0), (1, 2), (2, 0)]
    _same_weights(ref / "supernet.pt", tmp_path / "supernet.pt")
    assert _metrics(hist) == _metrics(ref_hist)


def test_fixed_arch_resumes_mid_epoch_bit_exact(setting, tmp_path):
    _, data, _, _ = setting
    arch_file = tmp_path / "a.arch"
    arch_file.write_text("arch a of tiny {\n  s1.0 local(span=3) width 8 heads 2\n  s2.0 axial width 8 heads 1\n}\n")
    la = load_arch(arch_file, TINY)
    cfg = CFG.model_copy(update={"epochs": 1})
    train(la, data, cfg, tmp_path / "ref", progress=False)
    train(la, data, cfg, tmp_path / "cut", progress=False, steps=1)
    train(la, data, cfg, tmp_path / "cut", progress=False, resume=True)
    _same_weights(tmp_path / "ref" / "model.pt", tmp_path / "cut" / "model.pt")


def test_checkpoint_without_the_new_fields_still_resumes(setting, tmp_path):
    """A checkpoint written before mid-epoch saves (no step, RNG, sums, precision) loads and resumes."""
    space, data, ref, _ = setting
    with pytest.raises(KeyboardInterrupt):
        train(space, data, CFG, tmp_path, progress=False, stop_after_epoch=1)
    ck = load_checkpoint(tmp_path / "supernet.pt")
    old = {k: v for k, v in ck.items() if k not in ("format", "weights_sha256", "step", "rng", "epoch_sums", "scaler")}
    old["config"] = {k: v for k, v in ck["config"].items() if k != "precision"}
    save_checkpoint(tmp_path / "supernet.pt", old)
    assert "step" not in load_checkpoint(tmp_path / "supernet.pt")
    train(space, data, CFG, tmp_path, progress=False, resume=True)
    _same_weights(ref / "supernet.pt", tmp_path / "supernet.pt")


def test_bad_step_options_and_an_empty_checkpoint_are_refused(setting, tmp_path):
    space, data, _, _ = setting
    with pytest.raises(SpaceError, match="--steps 0 must be at least 1"):
        train(space, data, CFG, tmp_path, progress=False, steps=0)
    with pytest.raises(SpaceError, match="--save-every -1"):
        train(space, data, CFG, tmp_path, progress=False, save_every=-1)
    train(space, data, CFG, tmp_path, progress=False, steps=1)
    ck = load_checkpoint(tmp_path / "supernet.pt")
    ck = {k: v for k, v in ck.items() if k not in ("format", "weights_sha256")}
    save_checkpoint(tmp_path / "supernet.pt", {**ck, "step": 0})  # epoch 0, step 0: no training at all
    with pytest.raises(SpaceError, match="damaged"):
        load_checkpoint(tmp_path / "supernet.pt")


def test_ctrl_c_message_names_the_mid_epoch_step(setting, tmp_path):
    from trionet_dsl.app.cli import _train_saved

    space, data, _, _ = setting
    train(space, data, CFG, tmp_path, progress=False, steps=3)
    msg = _train_saved(tmp_path)
    assert msg.startswith("epoch 1 step 3 is saved in") and "--resume" in msg

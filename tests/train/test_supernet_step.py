"""Supernet training options for ranking: in-place distillation and warm-up of the largest sub-network."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trionet_dsl import load
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.space.sampling import extreme, sample, sandwich
from trionet_dsl.train import TrainConfig, train
from trionet_dsl.train import loop as loop_module
from trionet_dsl.train.supernet_step import distillation_loss, plan_step, subnet_loss

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny.space"


@pytest.fixture(scope="module")
def space():
    return load(TINY)


def _kl_by_hand(student: list[list[float]], teacher: list[list[float]], t: float) -> float:
    """Textbook KL(p_teacher || p_student) of softmax(z / t), mean over the batch, times t²."""
    total = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        zs = [math.exp(v / t) for v in s_row]
        zt = [math.exp(v / t) for v in t_row]
        ps = [v / sum(zs) for v in zs]
        pt = [v / sum(zt) for v in zt]
        total += sum(q * math.log(q / p) for p, q in zip(ps, pt, strict=True))
    return total / len(student) * t * t


@pytest.mark.parametrize("t", [1.0, 2.0, 0.5])
def test_distillation_loss_is_the_textbook_kl(t):
    student = [[0.1, 2.0, -1.0], [1.5, 0.0, 0.3]]
    teacher = [[1.0, 0.5, -0.2], [-0.4, 2.2, 0.0]]
    got = distillation_loss(torch.tensor(student), torch.tensor(teacher), t).item()
    assert got == pytest.approx(_kl_by_hand(student, teacher, t), rel=1e-5)


def test_distillation_is_zero_on_the_teacher_and_sends_no_gradient_into_it():
    teacher = torch.tensor([[1.0, -2.0, 0.5]], requires_grad=True)
    student = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    assert distillation_loss(teacher.detach().clone(), teacher).item() == pytest.approx(0.0, abs=1e-7)
    distillation_loss(student, teacher).backward()
    assert teacher.grad is None and student.grad is not None
    # d KL / d z_student = softmax(z_student) - softmax(z_teacher) (t = 1)
    want = torch.softmax(student.detach(), 1) - torch.softmax(teacher.detach(), 1)
    assert torch.allclose(student.grad, want, atol=1e-6)


def test_subnet_loss_is_cross_entropy_without_a_teacher():
    logits, labels = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    p0 = math.exp(2) / (math.exp(2) + 1 + math.exp(-1))
    assert subnet_loss(logits, labels, TrainConfig()).item() == pytest.approx(-math.log(p0), rel=1e-6)


def _is_largest(space, arch) -> bool:
    for b, ab in zip(space.blocks, arch.blocks, strict=True):
        opt = next(o for o in b.options if o.op == ab.op)
        if ab.width != max(b.widths) or ab.heads != (max(opt.heads) if opt.heads else None):
            return False
    return True


@settings(max_examples=30, deadline=None)
@given(
    epoch=st.integers(0, 5),
    step=st.integers(0, 50),
    seed=st.integers(0, 2**32),
    sampling=st.sampled_from(["hierarchical", "uniform"]),
)
def test_plain_plan_is_one_draw_of_the_step_rng(space, epoch, step, seed, sampling):
    cfg = TrainConfig(seed=seed, sampling=sampling, distill=False)
    plan = plan_step(space, cfg, epoch, step, 10 * epoch + step)
    assert plan.archs == [sample(space, random.Random(f"{seed}/{epoch}/{step}"), sampling)] and not plan.teacher
    sw = plan_step(space, TrainConfig(seed=seed, sampling="sandwich", distill=False), epoch, step, 0)
    assert sw.archs == sandwich(space, random.Random(f"{seed}/{epoch}/{step}"), 2) and not sw.teacher


@settings(max_examples=30, deadline=None)
@given(step=st.integers(0, 50), seed=st.integers(0, 2**32), sampling=st.sampled_from(["hierarchical", "uniform"]))
def test_distillation_adds_the_largest_as_teacher_and_keeps_the_students(space, step, seed, sampling):
    plain = plan_step(space, TrainConfig(seed=seed, sampling=sampling, distill=False), 1, step, step)
    kd = plan_step(space, TrainConfig(seed=seed, sampling=sampling, distill=True), 1, step, step)
    assert kd.teacher and len(kd.archs) == 2
    assert _is_largest(space, kd.archs[0])
    assert kd.archs[1:] == plain.archs  # the same student sequence as the plain run
    sw = plan_step(space, TrainConfig(seed=seed, sampling="sandwich", distill=True), 1, step, step)
    assert sw.teacher and len(sw.archs) == 4 and _is_largest(space, sw.archs[0])


def test_warmup_trains_only_the_largest_for_the_first_k_steps(space):
    cfg = TrainConfig(seed=4, warmup_largest_steps=3, distill=True)
    for g in range(3):
        plan = plan_step(space, cfg, 0, g, g)
        assert len(plan.archs) == 1 and not plan.teacher
        assert plan.archs[0] == extreme(space, random.Random(f"4/0/{g}"), largest=True)
    after = plan_step(space, cfg, 0, 3, 3)
    assert after == plan_step(space, cfg.model_copy(update={"warmup_largest_steps": 0}), 0, 3, 3)


@pytest.fixture(scope="module")
def blobs(space, tmp_path_factory):
    rng = np.random.default_rng(1)
    y = np.arange(90) % 3
    x = rng.integers(0, 60, size=(90, 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * c : 4 * c + 4] += 150
    npz = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(npz, x=x, y=y)
    return load_dataset(str(npz), space, 0.2, seed=0)  # 72 training images: 4 steps of 16 per epoch


def test_the_loop_counts_warmup_in_run_steps_and_feeds_the_teacher(space, blobs, tmp_path, monkeypatch):
    plans, calls = [], []
    real_plan, real_loss = loop_module.plan_step, loop_module.subnet_loss

    def spy_plan(*a, **k):
        plans.append(real_plan(*a, **k))
        return plans[-1]

    def spy_loss(logits, labels, cfg, teacher=None):
        calls.append((logits.detach().clone(), teacher))
        return real_loss(logits, labels, cfg, teacher)

    monkeypatch.setattr(loop_module, "plan_step", spy_plan)
    monkeypatch.setattr(loop_module, "subnet_loss", spy_loss)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=3, distill=True, warmup_largest_steps=6)
    hist = train(space, blobs, cfg, tmp_path, progress=False)
    assert len(hist) == 2 and len(plans) == 8
    # 4 steps per epoch: warm-up covers epoch 1 and the first two steps of epoch 2
    assert [len(p.archs) for p in plans] == [1] * 6 + [2, 2]
    assert all(_is_largest(space, p.archs[0]) for p in plans)
    assert len(calls) == 6 + 4 and all(t is None for _, t in calls[:6])
    for i in (6, 8):  # each distilled step: the teacher on labels, then the student on its logits
        teacher_logits, none = calls[i]
        _, fed = calls[i + 1]
        assert none is None and fed is not None and torch.equal(fed, teacher_logits)


def test_cli_options_reach_the_checkpoint_and_resume_checks_them(blobs, tmp_path):
    from typer.testing import CliRunner

    from trionet_dsl.app.cli import app
    from trionet_dsl.train.checkpoint import load_checkpoint

    npz = tmp_path / "d.npz"
    np.savez(npz, x=(blobs.train_x[:40, :, :12, :12].numpy() * 0 + 1).astype(np.uint8), y=np.arange(40) % 3)
    out = tmp_path / "run"
    base = ["train", str(TINY), "--data", str(npz), "--batch-size", "16", "--epochs", "1", "--out", str(out)]
    r = CliRunner().invoke(app, [*base, "--distill", "--warmup-largest-steps", "1", "--steps", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    cfg = load_checkpoint(out / "supernet.pt")["config"]
    assert (cfg["distill"], cfg["warmup_largest_steps"], cfg["distill_temperature"]) == (True, 1, 1.0)
    assert TrainConfig().distill  # the default (see the README's ranking ablation)
    r = CliRunner().invoke(app, [*base, "--resume", "--no-distill", "--no-progress"])  # other settings
    assert r.exit_code == 2 and "distill" in r.output, r.output
    r = CliRunner().invoke(app, [*base, "--warmup-largest-steps", "-1", "--overwrite"])
    assert r.exit_code == 2 and "warmup-largest-steps" in r.output, r.output


def test_a_checkpoint_from_before_distillation_resumes_only_without_it(space, blobs, tmp_path):
    """Old runs trained without distillation: --resume compares with that, not with today's default."""
    from trionet_dsl.lang.errors import SpaceError
    from trionet_dsl.train.checkpoint import load_checkpoint, save_checkpoint

    plain = TrainConfig(epochs=2, batch_size=16, seed=3, distill=False)
    with pytest.raises(KeyboardInterrupt):
        train(space, blobs, plain, tmp_path, progress=False, stop_after_epoch=1)
    ck = load_checkpoint(tmp_path / "supernet.pt")
    old = {k: v for k, v in ck.items() if k not in ("format", "weights_sha256")}
    old["config"] = {k: v for k, v in ck["config"].items() if k not in ("distill", "distill_temperature")}
    old["config"].pop("warmup_largest_steps")
    save_checkpoint(tmp_path / "supernet.pt", old)
    with pytest.raises(SpaceError, match="distill"):
        train(space, blobs, plain.model_copy(update={"distill": True}), tmp_path, progress=False, resume=True)
    assert len(train(space, blobs, plain, tmp_path, progress=False, resume=True)) == 2

"""``--device`` and ``--precision``: resolution and refusals, bf16 autocast training on the CPU
against fp32, CPU-loadable checkpoints; CUDA tests (marked ``cuda``) skip without a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from trionet_dsl import load, load_arch
from trionet_dsl.app.cli import app
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.train import TrainConfig, train
from trionet_dsl.train.checkpoint import load_checkpoint
from trionet_dsl.train.device import autocast, check_precision, grad_scaler, resolve_device, to_cpu

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny.space"
HAS_CUDA = torch.cuda.is_available()
runner = CliRunner()


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    y = np.arange(90) % 3
    x = rng.integers(0, 60, size=(90, 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * c : 4 * c + 4] += 150
    p = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(p, x=x, y=y)
    return p


@pytest.fixture(scope="module")
def setting(npz):
    space = load(TINY)
    return space, load_dataset(str(npz), space, 0.2, seed=0)


# ----------------------------------------------------------------------------- resolution
@pytest.mark.skipif(HAS_CUDA, reason="auto picks the GPU here")
def test_auto_is_the_cpu_without_a_gpu_and_cuda_is_refused_in_one_line():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(SpaceError) as info:
        resolve_device("cuda")
    err = info.value
    assert "no CUDA GPU is available" in err.message and "\n" not in err.message and "--device cpu" in (err.hint or "")


def test_device_names(monkeypatch):
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(SpaceError, match="unknown --device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(SpaceError, match="unknown --device"):
        resolve_device("cuda:x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a pretend one-GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(SpaceError, match=r"there is no GPU 3 \(1 GPU\(s\) visible\)"):
        resolve_device("cuda:3")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has Metal")
def test_mps_is_refused_where_there_is_none():
    with pytest.raises(SpaceError, match="mps"):
        resolve_device("mps")


def test_precision_checks():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    assert check_precision("bf16", cpu) == "bf16"
    assert check_precision("fp16", gpu) == "fp16"
    with pytest.raises(SpaceError) as info:
        check_precision("fp16", cpu)
    assert "--precision bf16" in (info.value.hint or "")
    with pytest.raises(SpaceError, match="unknown --precision 'fp8'"):
        check_precision("fp8", cpu)
    assert not grad_scaler(cpu, "bf16").is_enabled() and not grad_scaler(cpu, "fp32").is_enabled()


def test_autocast_computes_in_bf16_and_fp32_stays_fp32():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8)
    with autocast(torch.device("cpu"), "bf16"):
        assert conv(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert conv(x).dtype == torch.float32


def test_to_cpu_copies_nested_state():
    state = {"a": torch.ones(2, requires_grad=True), "b": [{"c": torch.zeros(1)}, 3], "d": (torch.ones(1), "x")}
    out = to_cpu(state)
    assert out["b"][1] == 3 and out["d"][1] == "x" and not out["a"].requires_grad
    assert torch.equal(out["b"][0]["c"], torch.zeros(1))


# ----------------------------------------------------------------------------- training
def test_bf16_training_is_finite_and_close_to_fp32(setting, tmp_path):
    """Eight steps (2 epochs x 4) of the supernet: bf16's epoch losses within 0.01 of fp32's
    (measured: 1e-4), but not equal — autocast really ran; master weights stay fp32."""
    space, data = setting
    hist = {}
    for p in ("fp32", "bf16"):
        cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=0, precision=p)
        hist[p] = train(space, data, cfg, tmp_path / p, progress=False, device="cpu")
    for a, b in zip(hist["fp32"], hist["bf16"], strict=True):
        assert np.isfinite(b.train_loss) and abs(a.train_loss - b.train_loss) < 0.01
    wa = load_checkpoint(tmp_path / "fp32" / "supernet.pt")["model"]
    wb = load_checkpoint(tmp_path / "bf16" / "supernet.pt")["model"]
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)
    assert all(t.dtype in (torch.float32, torch.int64) for t in wb.values())
    diff = max((wa[k] - wb[k]).abs().max().item() for k in wa if wa[k].is_floating_point())
    assert diff < 0.1  # the same run, rounded differently (measured 0.013)


def test_resume_refuses_another_precision(setting, tmp_path):
    space, data = setting
    cfg = TrainConfig(epochs=1, batch_size=16, seed=0)
    train(space, data, cfg, tmp_path, progress=False, steps=1)
    with pytest.raises(SpaceError, match="precision"):
        train(space, data, cfg.model_copy(update={"precision": "bf16"}), tmp_path, progress=False, resume=True)


def test_fp16_on_cpu_is_refused_before_training(setting, tmp_path):
    space, data = setting
    with pytest.raises(SpaceError, match="fp16 is not supported on the CPU"):
        train(space, data, TrainConfig(precision="fp16"), tmp_path / "r", progress=False, device="cpu")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
def test_cli_device_cuda_without_a_gpu_is_one_line_exit_2(npz, tmp_path):
    r = runner.invoke(app, ["train", str(TINY), "--data", str(npz), "--out", str(tmp_path / "r"), "--device", "cuda"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "error: --device cuda: no CUDA GPU is available" in r.output
    assert not (tmp_path / "r").exists()  # refused before any data was loaded or folder made


def test_cli_bf16_steps_and_json(npz, tmp_path):
    run = tmp_path / "r"
    args = ["train", str(TINY), "--data", str(npz), "--out", str(run), "--epochs", "2", "--batch-size", "16"]
    r = runner.invoke(app, [*args, "--precision", "bf16", "--steps", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert '"saved_step": 3' in r.output and '"precision": "bf16"' in r.output and '"device": "cpu"' in r.output
    r = runner.invoke(app, [*args, "--precision", "bf16", "--steps", "3"])
    assert r.exit_code == 2 and "--resume" in r.output  # the folder holds the run: continue it, never overwrite
    r = runner.invoke(app, [*args, "--precision", "bf16", "--resume", "--save-every", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(run / "supernet.pt")["epoch"] == 2
    r = runner.invoke(app, [*args, "--precision", "fp16", "--device", "cpu", "--overwrite"])
    assert r.exit_code == 2 and "use --precision bf16" in r.output


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_training_writes_cpu_loadable_checkpoints(setting, tmp_path, precision):
    space, data = setting
    cfg = TrainConfig(epochs=1, batch_size=16, seed=0, precision=precision)
    hist = train(space, data, cfg, tmp_path, progress=False, device="cuda")
    assert np.isfinite(hist[0].train_loss)
    raw = torch.load(tmp_path / "supernet.pt", weights_only=True)  # no map_location: devices as written
    assert all(t.device.type == "cpu" for t in raw["model"].values())
    for st in raw["optimizer"]["state"].values():
        assert all(t.device.type == "cpu" for t in st.values() if isinstance(t, torch.Tensor))
    assert bool(raw["scaler"]) == (precision == "fp16")


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_mid_epoch_resume_and_export(setting, npz, tmp_path):
    """A run cut on the GPU resumes there; search and export run on the GPU and the file loads on the CPU."""
    from trionet_dsl.app.export import export_job, load_exported
    from trionet_dsl.app.searching import search_job

    space, data = setting
    cfg = TrainConfig(epochs=1, batch_size=16, seed=0, precision="bf16")
    train(space, data, cfg, tmp_path / "run", progress=False, device="cuda", steps=2)
    train(space, data, cfg, tmp_path / "run", progress=False, device="cuda", resume=True)
    ck = tmp_path / "run" / "supernet.pt"
    assert load_checkpoint(ck)["epoch"] == 1
    best = tmp_path / "best.arch"
    search_job(TINY, ck, best, budget=3, progress=False, device="cuda", precision="bf16")
    res = export_job(best, tmp_path / "m.pt", ck, space=TINY, device="cuda", precision="bf16")
    model = load_exported(res.path)
    assert all(p.device.type == "cpu" for p in model.parameters())
    inp = load_arch(best, TINY).space.space.input
    x = torch.rand(2, inp.channels, inp.height, inp.width) * 255
    assert torch.isfinite(model(x)).all()


def test_bf16_search_header_sets_exports_recalibration_precision(setting, tmp_path):
    """search --precision bf16 says so in the arch's header; export then recalibrates BN in bf16 by
    default (the same BN statistics as an explicit --precision bf16, not fp32's)."""
    from trionet_dsl.app.export import export_job
    from trionet_dsl.app.searching import search_job

    space, data = setting
    cfg = TrainConfig(epochs=1, batch_size=16, seed=0)
    train(space, data, cfg, tmp_path / "run", progress=False)
    ck = tmp_path / "run" / "supernet.pt"
    best = tmp_path / "best.arch"
    search_job(TINY, ck, best, budget=2, progress=False, precision="bf16", device="cpu")
    assert "BN recalibrated on 8 training batches, precision bf16" in best.read_text()

    def running(precision: str | None) -> dict[str, torch.Tensor]:
        res = export_job(best, tmp_path / f"{precision}.pt", ck, space=TINY, device="cpu", precision=precision)
        sd = torch.load(res.path, weights_only=True)["state_dict"]
        return {k: v for k, v in sd.items() if "running_" in k}

    default, bf16, fp32 = running(None), running("bf16"), running("fp32")
    assert all(torch.equal(default[k], bf16[k]) for k in bf16)
    assert any(not torch.equal(fp32[k], bf16[k]) for k in bf16)


def test_cli_bf16_trains_the_offset_loop(npz, tmp_path):
    """bf16 training of a supernet whose local attention runs the offset loop (16x16 maps: the tiny
    space's stem keeps the resolution here). It used to stop in backward on a dtype mismatch
    (bf16 q against fp32 embeddings), with a traceback."""
    space = tmp_path / "tiny16.space"
    space.write_text(TINY.read_text().replace("conv 3x3 8 stride 2", "conv 3x3 8 stride 1"))
    args = ["train", str(space), "--data", str(npz), "--out", str(tmp_path / "r"), "--batch-size", "8"]
    r = runner.invoke(app, [*args, "--precision", "bf16", "--steps", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert '"saved_step": 3' in r.output

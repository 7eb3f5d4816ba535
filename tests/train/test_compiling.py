"""``--compile``: a fixed arch's compiled training equals the eager one and saves the same keys,
resumes across the setting, a supernet is refused in one line, and one-shot evaluation on
compiled extracted sub-networks gives the eager accuracies. Backends ``aot_eager`` / ``eager``:
the real tracing (dynamo; AOT autograd for training) without inductor's code generation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo
from typer.testing import CliRunner

from trionet_dsl import load, load_arch
from trionet_dsl.app.cli import app
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.search.evaluators import SupernetEvaluator
from trionet_dsl.space.sampling import sample
from trionet_dsl.train import TrainConfig, train
from trionet_dsl.train.checkpoint import load_checkpoint
from trionet_dsl.train.compiling import compile_model, compile_scope

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny.space"
ARCH = "arch a of tiny {\n  s1.0 local(span=3) width 8 heads 2\n  s2.0 axial width 8 heads 1\n}\n"
CFG = TrainConfig(epochs=1, batch_size=16, lr=0.05, seed=0)
runner = CliRunner()


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compile")
    rng = np.random.default_rng(2)
    y = np.arange(90) % 3
    x = rng.integers(0, 60, size=(90, 12, 12, 3), dtype=np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * c : 4 * c + 4] += 150
    npz = tmp / "blobs.npz"
    np.savez(npz, x=x, y=y)
    (tmp / "a.arch").write_text(ARCH)
    space = load(TINY)
    return space, load_arch(tmp / "a.arch", space), load_dataset(str(npz), space, 0.2, seed=0), npz, tmp


def _graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def _fresh() -> None:
    """Dynamo's caches and counters are per process: start each count from nothing."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_compile_off_returns_the_module_and_on_shares_its_weights():
    net = torch.nn.Linear(3, 2)
    assert compile_model(net, "off") is net
    compiled = compile_model(net, "default", "eager")
    assert compiled is not net
    assert [k.removeprefix("_orig_mod.") for k in compiled.state_dict()] == list(net.state_dict())
    assert all(a is b for a, b in zip(compiled.parameters(), net.parameters(), strict=True))
    with pytest.raises(SpaceError, match="unknown --compile 'fast'"):
        compile_model(net, "fast")


def test_compiled_arch_training_equals_eager_and_saves_the_eager_keys(setting, tmp_path):
    _, arch, data, _, _ = setting
    eager = train(arch, data, CFG, tmp_path / "eager", progress=False)
    _fresh()
    compiled = train(
        arch, data, CFG, tmp_path / "c", progress=False, compile_mode="default", compile_backend="aot_eager"
    )
    assert _graphs() == 1  # one graph for the run: no graph break, no recompile (fixed batch shape)
    assert len(eager) == len(compiled) == 1
    a, b = eager[0], compiled[0]
    assert abs(a.train_loss - b.train_loss) < 1e-6 and a.train_acc == b.train_acc and a.val_acc == b.val_acc
    wa, wb = _weights(tmp_path / "eager" / "model.pt"), _weights(tmp_path / "c" / "model.pt")
    assert list(wa) == list(wb) and not any("_orig_mod" in k for k in wb)
    assert max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa) < 1e-6
    assert load_checkpoint(tmp_path / "c" / "model.pt")["compile"] == "default"


def test_a_compiled_resume_of_an_eager_run_continues_it(setting, tmp_path):
    """``compile`` is a speed setting: not compared on --resume, and the weights load either way."""
    _, arch, data, _, _ = setting
    train(arch, data, CFG, tmp_path / "full", progress=False)
    train(arch, data, CFG, tmp_path / "cut", progress=False, steps=2)  # eager, stopped mid-epoch
    _fresh()
    hist = train(
        arch,
        data,
        CFG,
        tmp_path / "cut",
        resume=True,
        progress=False,
        compile_mode="default",
        compile_backend="aot_eager",
    )
    assert hist[-1].epoch == 1
    wa, wb = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "cut" / "model.pt")
    assert list(wa) == list(wb)
    assert max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa) < 1e-6


def test_supernet_training_refuses_compile_in_one_line(setting, tmp_path):
    space, _, data, npz, _ = setting
    with pytest.raises(SpaceError, match="supernet training activates a different sub-network every step"):
        train(space, data, CFG, tmp_path / "r", progress=False, compile_mode="default")
    assert not (tmp_path / "r").exists()  # refused before any folder or model
    args = ["train", str(TINY), "--data", str(npz), "--out", str(tmp_path / "r"), "--compile"]
    r = runner.invoke(app, [*args, "default"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"{TINY}: error: --compile default is for a fixed network" in r.output
    assert "hint: drop --compile" in r.output
    r = runner.invoke(app, [*args, "fast"])
    assert r.exit_code == 2 and "unknown --compile 'fast'" in r.output
    assert not (tmp_path / "r").exists()


def test_one_shot_evaluation_on_compiled_extracted_subnets_equals_eager(setting):
    """Ten archs (past dynamo's limit of 8 graphs per function): every one compiled, the same
    accuracy as the eager (prefix-cached) evaluator, and the same supernet state after it."""
    space, _, data, _, _ = setting
    torch.manual_seed(0)
    state = Supernet(space, seed=0).state_dict()  # BN scales away from their zero init: archs differ
    state = {k: torch.rand_like(v) + 0.5 if v.ndim == 1 and k.endswith("weight") else v for k, v in state.items()}

    def evaluator(mode: str) -> SupernetEvaluator:
        net = Supernet(space, seed=1)
        net.load_state_dict(state)
        return SupernetEvaluator(net, data, bn_batches=2, batch_size=16, compile_mode=mode, compile_backend="eager")

    eager, compiled = evaluator("off"), evaluator("default")
    assert eager.cache is not None and compiled.cache is None  # a compiled network runs whole
    rng = random.Random(0)
    archs = [sample(space, rng) for _ in range(10)]
    assert len({a.model_dump_json() for a in archs}) == 10
    _fresh()
    accs = []
    for arch in archs:
        a, b = eager(arch)["accuracy"], compiled(arch)["accuracy"]
        assert a == b
        sa, sb = eager.net.state_dict(), compiled.net.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        accs.append(a)
    assert _graphs() == 10  # a graph per arch (one validation batch), none fell back to eager
    assert len(set(accs)) > 1  # the archs really score differently


def test_compile_scope_lifts_the_graph_limit_only_when_on():
    limit = torch._dynamo.config.recompile_limit
    with compile_scope("off"):
        assert torch._dynamo.config.recompile_limit == limit
    with compile_scope("default"):
        assert torch._dynamo.config.recompile_limit > 1000
    assert torch._dynamo.config.recompile_limit == limit


def test_search_and_rank_refuse_an_unknown_compile_mode_before_loading(setting, tmp_path):
    r = runner.invoke(app, ["search", str(TINY), "--checkpoint", str(tmp_path / "none.pt"), "--compile", "fast"])
    assert r.exit_code == 2 and "unknown --compile 'fast'" in r.output
    r = runner.invoke(app, ["rank", str(TINY), "--checkpoint", str(tmp_path / "none.pt"), "--compile", "fast"])
    assert r.exit_code == 2 and "unknown --compile 'fast'" in r.output


def test_search_with_compile_finds_and_measures_what_eager_does(setting, tmp_path):
    from trionet_dsl.app.searching import search_job

    space, _, data, _, _ = setting
    train(space, data, CFG, tmp_path / "run", progress=False, steps=2)
    ck = tmp_path / "run" / "supernet.pt"
    _fresh()
    outs = {
        mode: search_job(
            TINY,
            ck,
            tmp_path / f"{mode}.arch",
            strategy="random",
            budget=4,
            progress=False,
            compile_mode=mode,
            compile_backend="eager",
        )
        for mode in ("off", "default")
    }
    assert _graphs() == 4  # every evaluated arch ran compiled
    off, on = outs["off"], outs["default"]
    assert on.best.arch.blocks == off.best.arch.blocks and on.accuracy == off.accuracy
    history = [(tmp_path / f"{m}.history.jsonl").read_text().splitlines() for m in ("off", "default")]
    assert len(history[0]) == 4 and history[0] == history[1]
    assert off.prefix_reuse is not None and on.prefix_reuse is None  # compiled networks run whole

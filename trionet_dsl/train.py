"""Training: a supernet with Hierarchical Sampling, or one fixed arch from scratch.

Reproducible and resumable bit for bit: the sub-networks of step ``t`` of epoch ``e``
come from ``Random(f"{seed}/{e}/{t}")``, batches and augmentation from a generator
seeded by ``(seed, epoch)``, and the checkpoint written after every epoch holds the
model, optimizer and schedule, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

from trionet_dsl.checkpoint import load_checkpoint, require_space, save_checkpoint
from trionet_dsl.emit import emit_arch, emit_space
from trionet_dsl.errors import SpaceError
from trionet_dsl.io import atomic_write_text
from trionet_dsl.loader import LoadedArch
from trionet_dsl.model import build
from trionet_dsl.sampling import extreme, sample, sandwich
from trionet_dsl.semantics import ResolvedSpace
from trionet_dsl.supernet import Supernet


class TrainConfig(BaseModel):
    """Everything that decides a training run (saved in the checkpoint)."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    sampling: Literal["hierarchical", "uniform", "sandwich"] = "hierarchical"
    sandwich_random: int = Field(2, ge=0)
    sharing: Literal["multihead", "prefix"] = "multihead"
    seed: int = 0
    channels_last: bool = True
    augment: bool = True


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float
    images_per_s: float
    lr: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or "rel" in name or "pos" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
             channels_last: bool = True) -> float:
    """Top-1 accuracy in eval mode."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        correct += (model(xb).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / max(1, len(x))


def calibration_batches(data, n: int, batch_size: int, seed: int, channels_last: bool = True) -> list[torch.Tensor]:
    """The first ``n`` un-augmented training batches of epoch 0: fixed inputs for ``recalibrate_bn``.

    The last batch may be short: with drop_last a split smaller than one batch gave no
    batches at all, and recalibration then reset BN to mean 0 / variance 1.
    """
    from trionet_dsl.data import iterate

    batches = iterate(data, "train", batch_size, 0, seed, augment=False)
    return [xb.contiguous(memory_format=torch.channels_last) if channels_last else xb
            for _, (xb, _) in zip(range(n), batches)]


def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Reset BN running stats and re-estimate them as a plain average over ``batches``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    with torch.no_grad():
        for xb in batches:
            model(xb)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


BEST_NAME = "best.pt"
"""The checkpoint of the epoch with the best validation accuracy, kept beside the last one."""


def check_out_dir(out: Path) -> None:
    """A run folder must be a folder: refuse a file before any data is loaded."""
    if out.exists() and not out.is_dir():
        raise SpaceError(f"--out {out} is a file, not a folder", file=str(out),
                         hint="give a folder for the run (checkpoints and metrics.jsonl go inside)")


def _archs_for_step(space: ResolvedSpace, cfg: TrainConfig, epoch: int, step: int):
    rng = random.Random(f"{cfg.seed}/{epoch}/{step}")
    if cfg.sampling == "sandwich":
        return sandwich(space, rng, cfg.sandwich_random)
    return [sample(space, rng, cfg.sampling)]


def train(
    target: ResolvedSpace | LoadedArch,
    data,  # trionet_dsl.data.DataBundle
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> list[EpochMetrics]:
    """Train and checkpoint into ``out_dir`` (``supernet.pt`` or ``model.pt``, ``metrics.jsonl``)."""
    from trionet_dsl.data import iterate

    out = Path(out_dir)
    check_out_dir(out)
    steps_per_epoch = len(data.train_x) // cfg.batch_size
    if steps_per_epoch == 0:
        raise SpaceError(f"an epoch would have no training step: {len(data.train_x)} training image(s) but "
                         f"--batch-size {cfg.batch_size} (incomplete batches are dropped)",
                         hint=f"use --batch-size {max(1, len(data.train_x))} or lower, or more data")
    out.mkdir(parents=True, exist_ok=True)
    is_supernet = isinstance(target, ResolvedSpace)
    space = target if is_supernet else target.space
    ckpt_path = out / ("supernet.pt" if is_supernet else "model.pt")
    metrics_path = out / "metrics.jsonl"
    torch.manual_seed(cfg.seed)
    model: nn.Module = (Supernet(space, cfg.sharing, seed=cfg.seed) if is_supernet
                        else build(space, target.arch, seed=cfg.seed))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))
    history: list[EpochMetrics] = []
    start_epoch = 0
    space_text = emit_space(space.space)
    if resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        require_space(ck, space_text, space.name, ckpt_path)
        if ck.get("config") != cfg.model_dump(mode="json"):
            diff = {k: (ck["config"].get(k), v) for k, v in cfg.model_dump(mode="json").items()
                    if ck["config"].get(k) != v}
            raise SpaceError(f"--resume with different settings than the checkpoint: {diff}",
                             hint="use the same options as the interrupted run")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch = ck["epoch"]
        history = [EpochMetrics(**m) for m in ck.get("metrics", [])]
    elif resume:
        raise SpaceError(f"nothing to resume: {ckpt_path} does not exist", hint="drop --resume to start a new run")

    eval_arch = None
    if is_supernet:
        eval_arch = extreme(space, random.Random(cfg.seed), largest=True, name="largest")
        calib = calibration_batches(data, 8, 128, cfg.seed, cfg.channels_last)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f} {task.fields[ips]:.0f} img/s"),
               TimeRemainingColumn()]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            task = bar.add_task("train", total=steps_per_epoch, epoch=f"{epoch + 1}/{cfg.epochs}", loss=0.0,
                                acc=0.0, ips=0.0)
            model.train()
            t0 = time.perf_counter()
            seen = correct = 0
            loss_sum = 0.0
            for step, (xb, yb) in enumerate(iterate(data, "train", cfg.batch_size, epoch, cfg.seed,
                                                    augment=cfg.augment, drop_last=True)):
                if cfg.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                opt.zero_grad(set_to_none=True)
                archs = _archs_for_step(space, cfg, epoch, step) if is_supernet else [None]
                for arch in archs:
                    if arch is not None:
                        model.activate(arch)
                    logits = model(xb)
                    loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
                    (loss / len(archs)).backward()
                    correct += (logits.argmax(1) == yb).sum().item()
                    seen += len(yb)
                    loss_sum += loss.item() * len(yb)
                opt.step()
                sched.step()
                ips = seen / max(1e-9, time.perf_counter() - t0)
                bar.update(task, advance=1, loss=loss_sum / seen, acc=correct / seen, ips=ips)
            saved = None
            if is_supernet:  # running BN stats mix every sub-network: measure with its own, then put them back
                model.activate(eval_arch)
                saved = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "batches" in k}
                recalibrate_bn(model, calib)
            val = evaluate(model, data.val_x, data.val_y, channels_last=cfg.channels_last)
            if saved is not None:
                model.load_state_dict(saved, strict=False)
            m = EpochMetrics(epoch + 1, loss_sum / max(1, seen), correct / max(1, seen), val,
                             seen / max(1e-9, time.perf_counter() - t0), sched.get_last_lr()[0])
            history.append(m)
            bar.update(task, description="done")
            if progress:
                note = " (largest sub-network, BN recalibrated)" if is_supernet else ""
                bar.console.print(f"epoch {m.epoch}: loss {m.train_loss:.4f} train acc {m.train_acc:.4f} "
                                  f"val acc {m.val_acc:.4f}{note}")
            payload = {
                "kind": "supernet" if is_supernet else "arch",
                "space_text": space_text,
                "arch_text": None if is_supernet else emit_arch(target.arch),
                "sharing": cfg.sharing,
                "config": cfg.model_dump(mode="json"),
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "metrics": [h.as_dict() for h in history],
                "data": data.meta() if hasattr(data, "meta") else {},
            }
            save_checkpoint(ckpt_path, payload)
            if m.val_acc >= max(h.val_acc for h in history):  # ties: the later epoch (trained longer)
                save_checkpoint(out / BEST_NAME, payload)
            atomic_write_text(metrics_path, "".join(json.dumps(h.as_dict()) + "\n" for h in history))
            if on_epoch is not None:
                on_epoch(m)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
                raise KeyboardInterrupt
    return history

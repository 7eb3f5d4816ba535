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

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.train.checkpoint import load_checkpoint, require_space, save_checkpoint
from trionet_dsl.lang.emit import emit_arch, emit_space
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write_text
from trionet_dsl.space.loader import LoadedArch
from trionet_dsl.nn.network import build
from trionet_dsl.space.sampling import extreme, sample, sandwich
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.nn.supernet import Supernet
from trionet_dsl.train.config import TrainConfig
from trionet_dsl.train.evaluate import calibration_batches, evaluate, recalibrate_bn


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
    data,  # trionet_dsl.train.data.DataBundle
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> list[EpochMetrics]:
    """Train and checkpoint into ``out_dir`` (``supernet.pt`` or ``model.pt``, ``metrics.jsonl``)."""
    from trionet_dsl.train.data import iterate

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

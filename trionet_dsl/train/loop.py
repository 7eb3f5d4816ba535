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
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from trionet_dsl.lang.emit import emit_arch, emit_space
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write, atomic_write_text
from trionet_dsl.lang.ir import Arch
from trionet_dsl.nn.network import TrioNet, build
from trionet_dsl.nn.supernet import Supernet, load_weights
from trionet_dsl.space.loader import LoadedArch
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.space.sampling import extreme, sample, sandwich
from trionet_dsl.train.checkpoint import load_checkpoint, require_space, save_checkpoint
from trionet_dsl.train.config import TrainConfig
from trionet_dsl.train.evaluate import CALIBRATION_BATCH_SIZE, calibration_batches, evaluate, recalibrate_bn

if TYPE_CHECKING:
    from trionet_dsl.train.data import DataBundle


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
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
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
        raise SpaceError(
            f"--out {out} is a file, not a folder",
            file=str(out),
            hint="give a folder for the run (checkpoints and metrics.jsonl go inside)",
        )


def _archs_for_step(space: ResolvedSpace, cfg: TrainConfig, epoch: int, step: int) -> list[Arch]:
    rng = random.Random(f"{cfg.seed}/{epoch}/{step}")
    if cfg.sampling == "sandwich":
        return sandwich(space, rng, cfg.sandwich_random)
    return [sample(space, rng, cfg.sampling)]


class _Run:
    """One training run's state: model, optimizer, schedule, history; one method per phase."""

    def __init__(
        self,
        target: ResolvedSpace | LoadedArch,
        data: DataBundle,
        cfg: TrainConfig,
        out: Path,
        max_memory: int | None = None,
    ) -> None:
        self.data, self.cfg, self.out = data, cfg, out
        self.is_supernet = isinstance(target, ResolvedSpace)
        self.space: ResolvedSpace = target if isinstance(target, ResolvedSpace) else target.space
        self.arch_text = None if isinstance(target, ResolvedSpace) else emit_arch(target.arch)
        self.ckpt_path = out / ("supernet.pt" if self.is_supernet else "model.pt")
        self.space_text = emit_space(self.space.space)
        self.steps_per_epoch = len(data.train_x) // cfg.batch_size
        torch.manual_seed(cfg.seed)
        model: Supernet | TrioNet = (
            Supernet(self.space, cfg.sharing, seed=cfg.seed, max_memory=max_memory, batch_size=cfg.batch_size)
            if isinstance(target, ResolvedSpace)
            else build(self.space, target.arch, seed=cfg.seed)
        )
        if cfg.channels_last:  # converts the module in place (and returns it)
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit Module.to(memory_format=)
        self.model = model
        self.opt = make_optimizer(self.model, cfg)
        total = cfg.epochs * self.steps_per_epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
        )
        self.history: list[EpochMetrics] = []
        self.start_epoch = 0
        if self.is_supernet:  # validation measures the largest sub-network with its own BN statistics
            self.eval_arch = extreme(self.space, random.Random(cfg.seed), largest=True, name="largest")
            self.calib = calibration_batches(data, 8, CALIBRATION_BATCH_SIZE, cfg.seed, cfg.channels_last)

    def resume(self) -> None:
        """Continue from the run's checkpoint: same space, same settings, or a clear refusal."""
        if not self.ckpt_path.exists():
            raise SpaceError(
                f"nothing to resume: {self.ckpt_path} does not exist", hint="drop --resume to start a new run"
            )
        ck = load_checkpoint(self.ckpt_path)
        require_space(ck, self.space_text, self.space.name, self.ckpt_path)
        mine = self.cfg.model_dump(mode="json")
        if ck.get("config") != mine:
            diff = {k: (ck["config"].get(k), v) for k, v in mine.items() if ck["config"].get(k) != v}
            raise SpaceError(
                f"--resume with different settings than the checkpoint: {diff}",
                hint="use the same options as the interrupted run",
            )
        load_weights(self.model, ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.start_epoch = ck["epoch"]
        self.history = [EpochMetrics(**m) for m in ck.get("metrics", [])]

    def train_epoch(self, epoch: int, tick: Callable[[float, float, float], None]) -> tuple[float, float, float]:
        """One epoch of steps; returns (mean loss, accuracy, images/s) over the sampled sub-networks."""
        from trionet_dsl.train.data import iterate

        cfg, model = self.cfg, self.model
        model.train()
        t0 = time.perf_counter()
        seen = correct = 0
        loss_sum = 0.0
        for step, (xb, yb) in enumerate(
            iterate(self.data, "train", cfg.batch_size, epoch, cfg.seed, augment=cfg.augment, drop_last=True)
        ):
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            self.opt.zero_grad(set_to_none=True)
            archs: list[Arch] | list[None] = (
                _archs_for_step(self.space, cfg, epoch, step) if self.is_supernet else [None]
            )
            for arch in archs:
                if arch is not None:
                    assert isinstance(model, Supernet)  # only a supernet run samples archs
                    model.activate(arch)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
                (loss / len(archs)).backward()
                correct += (logits.argmax(1) == yb).sum().item()
                seen += len(yb)
                loss_sum += loss.item() * len(yb)
            self.opt.step()
            self.sched.step()
            tick(loss_sum / seen, correct / seen, seen / max(1e-9, time.perf_counter() - t0))
        return loss_sum / max(1, seen), correct / max(1, seen), seen / max(1e-9, time.perf_counter() - t0)

    def validate(self) -> float:
        """Validation accuracy; a supernet's running BN statistics are put back afterwards."""
        saved = None
        # a supernet's running BN stats mix every sub-network: measure with its own, then put them back
        if isinstance(self.model, Supernet):
            self.model.activate(self.eval_arch)
            saved = {k: v.clone() for k, v in self.model.state_dict().items() if "running_" in k or "batches" in k}
            recalibrate_bn(self.model, self.calib)
        val = evaluate(self.model, self.data.val_x, self.data.val_y, channels_last=self.cfg.channels_last)
        if saved is not None:
            self.model.load_state_dict(saved, strict=False)
        return val

    def save(self, epoch: int) -> None:
        """The epoch's checkpoint (and ``best.pt`` when it is the best so far), written atomically."""
        payload = {
            "kind": "supernet" if self.is_supernet else "arch",
            "space_text": self.space_text,
            "arch_text": self.arch_text,
            "sharing": self.cfg.sharing,
            "config": self.cfg.model_dump(mode="json"),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "metrics": [h.as_dict() for h in self.history],
            "data": self.data.meta() if hasattr(self.data, "meta") else {},
        }
        save_checkpoint(self.ckpt_path, payload)
        if self.history[-1].val_acc >= max(h.val_acc for h in self.history):  # ties: the later epoch
            # a byte copy of the file just written: no second serialisation and digest of the weights
            with self.ckpt_path.open("rb") as src:
                atomic_write(self.out / BEST_NAME, lambda f: shutil.copyfileobj(src, f))
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(h.as_dict()) + "\n" for h in self.history))


def train(
    target: ResolvedSpace | LoadedArch,
    data: DataBundle,
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    overwrite: bool = False,
    max_memory: int | None = None,
) -> list[EpochMetrics]:
    """Train and checkpoint into ``out_dir`` (``supernet.pt`` or ``model.pt``, ``best.pt``, ``metrics.jsonl``).

    A folder that already holds a run is continued (``resume``) or replaced (``overwrite``),
    never silently overwritten; ``max_memory`` (bytes) bounds a supernet's estimated memory.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    out = Path(out_dir)
    check_out_dir(out)
    if len(data.train_x) // cfg.batch_size == 0:
        raise SpaceError(
            f"an epoch would have no training step: {len(data.train_x)} training image(s) but "
            f"--batch-size {cfg.batch_size} (incomplete batches are dropped)",
            hint=f"use --batch-size {max(1, len(data.train_x))} or lower, or more data",
        )
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(target, data, cfg, out, max_memory)
    if not resume and not overwrite and run.ckpt_path.exists():
        raise SpaceError(
            f"--out {out} already holds a run ({run.ckpt_path.name})",
            file=str(out),
            hint="continue it with --resume, start over with --overwrite, or give another --out",
        )
    if resume:
        run.resume()
    columns = [
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f} {task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        for epoch in range(run.start_epoch, cfg.epochs):
            task = bar.add_task(
                "train", total=run.steps_per_epoch, epoch=f"{epoch + 1}/{cfg.epochs}", loss=0.0, acc=0.0, ips=0.0
            )

            def tick(lo: float, ac: float, ip: float, task: TaskID = task) -> None:
                bar.update(task, advance=1, loss=lo, acc=ac, ips=ip)

            loss, acc, ips = run.train_epoch(epoch, tick)
            # get_last_lr is typed float | Tensor; LambdaLR of a float lr gives floats
            m = EpochMetrics(epoch + 1, loss, acc, run.validate(), ips, float(run.sched.get_last_lr()[0]))
            run.history.append(m)
            if progress:
                note = " (largest sub-network, BN recalibrated)" if run.is_supernet else ""
                bar.console.print(
                    f"epoch {m.epoch}: loss {m.train_loss:.4f} train acc {m.train_acc:.4f} "
                    f"val acc {m.val_acc:.4f}{note}"
                )
            run.save(epoch + 1)
            if on_epoch is not None:
                on_epoch(m)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
                raise KeyboardInterrupt
    return run.history

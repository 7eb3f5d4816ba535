"""Training: a supernet with Hierarchical Sampling, or one fixed arch from scratch.

Reproducible and resumable bit for bit: the sub-networks of step ``t`` of epoch ``e``
come from ``Random(f"{seed}/{e}/{t}")``, batches from a permutation seeded by ``(seed, epoch)``
with augmentation seeded per sample (see ``train.data``), and the checkpoint written after
every epoch (and every ``save_every`` steps inside one) holds the model, optimizer, schedule, RNG state and the
epoch's running sums, so a resumed run continues exactly where it stopped, mid-epoch too.

The run computes on ``device`` (see :mod:`trionet_dsl.train.device`) in ``cfg.precision``;
what it writes is CPU tensors, loadable anywhere. A fixed arch's training steps may run compiled
(``compile_mode``, :mod:`trionet_dsl.train.compiling`); validation and checkpoints use the eager
module, so the saved keys and a resume are the same either way.

Under ``torchrun`` (or in a process group the caller made) the run is data-parallel: see
:mod:`trionet_dsl.train.distributed`. ``cfg.batch_size`` is the *global* batch; every rank draws
the same global batch and sub-networks and trains on its contiguous share, gradients are averaged
over ranks (and, with ``cfg.sync_bn``, BN statistics too), so N processes take the steps one
process takes. Rank 0 alone validates and writes checkpoints, metrics and progress; every rank
reads the checkpoint on resume.
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
from torch import nn

from trionet_dsl.lang.emit import emit_arch, emit_space
from trionet_dsl.lang.errors import SpaceError
from trionet_dsl.lang.files import atomic_write, atomic_write_text
from trionet_dsl.lang.ir import Arch
from trionet_dsl.nn.network import TrioNet, build
from trionet_dsl.nn.supernet import Supernet, load_weights
from trionet_dsl.space.loader import LoadedArch
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.space.sampling import extreme
from trionet_dsl.train import distributed as dist_
from trionet_dsl.train.checkpoint import load_checkpoint, require_space, save_checkpoint
from trionet_dsl.train.compiling import check_compile_mode, compile_model, compile_scope, refuse_supernet
from trionet_dsl.train.config import LEGACY_SETTINGS, ONE_SHOT_BN_BATCHES, TrainConfig
from trionet_dsl.train.device import autocast, check_precision, grad_scaler, to_cpu
from trionet_dsl.train.evaluate import CALIBRATION_BATCH_SIZE, calibration_batches, evaluate_split, recalibrate_bn
from trionet_dsl.train.metric_sinks import closing, tensorboard_sink
from trionet_dsl.train.supernet_step import plan_step, subnet_loss

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


class _Run:
    """One training run's state: model, optimizer, schedule, history; one method per phase."""

    def __init__(
        self,
        target: ResolvedSpace | LoadedArch,
        data: DataBundle,
        cfg: TrainConfig,
        out: Path,
        max_memory: int | None = None,
        device: torch.device | None = None,
        compile_mode: str = "off",
        compile_backend: str = "inductor",
    ) -> None:
        self.data, self.cfg, self.out = data, cfg, out
        self.compile_mode = compile_mode
        self.device = device or torch.device("cpu")
        self.is_supernet = isinstance(target, ResolvedSpace)
        self.space: ResolvedSpace = target if isinstance(target, ResolvedSpace) else target.space
        self.arch_text = None if isinstance(target, ResolvedSpace) else emit_arch(target.arch)
        self.ckpt_path = out / ("supernet.pt" if self.is_supernet else "model.pt")
        self.space_text = emit_space(self.space.space)
        self.steps_per_epoch = data.num_train // cfg.batch_size
        self.world, self.rank = dist_.world(), dist_.rank()
        local_batch = dist_.local_batch(cfg.batch_size, self.world)
        torch.manual_seed(cfg.seed)
        model: Supernet | TrioNet = (
            Supernet(self.space, cfg.sharing, seed=cfg.seed, max_memory=max_memory, batch_size=local_batch)
            if isinstance(target, ResolvedSpace)
            else build(self.space, target.arch, seed=cfg.seed)
        )
        if cfg.channels_last:  # converts the module in place (and returns it)
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit Module.to(memory_format=)
        if cfg.sync_bn and self.world > 1:  # same parameter and buffer tensors, same state-dict keys
            from trionet_dsl.nn.ops.sync_bn import convert_sync_bn

            convert_sync_bn(model)
        model.to(self.device)  # before the optimizer is built: its state lives beside the parameters
        self.model = model
        # what a training step calls: a fixed arch uses all its parameters every step, so plain DDP
        # fits it; the supernet's gradients are averaged by hand (train.distributed's docstring)
        self.net: nn.Module = model
        if self.world > 1 and not self.is_supernet:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
        elif self.world > 1:
            dist_.broadcast_state(model)  # every rank starts from rank 0's weights, as DDP does
        if not self.is_supernet:  # (a supernet is refused in train(): a new graph per sub-network)
            self.net = compile_model(self.net, compile_mode, compile_backend)  # shares model's weights
        self.scaler = grad_scaler(self.device, cfg.precision)
        self.opt = make_optimizer(self.model, cfg)
        total = cfg.epochs * self.steps_per_epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
        )
        self.history: list[EpochMetrics] = []
        self.start_epoch = 0
        self.start_step = 0  # optimizer steps already done in epoch start_epoch (a mid-epoch checkpoint)
        self.sums = {"seen": 0, "correct": 0, "loss_sum": 0.0}  # the current epoch's running totals
        if self.is_supernet:  # validation measures the largest sub-network with its own BN statistics
            self.eval_arch = extreme(self.space, random.Random(cfg.seed), largest=True, name="largest")
            calib = calibration_batches(data, ONE_SHOT_BN_BATCHES, CALIBRATION_BATCH_SIZE, cfg.seed, cfg.channels_last)
            self.calib = [xb.to(self.device) for xb in calib]

    def resume(self) -> None:
        """Continue from the run's checkpoint: same space, same settings, or a clear refusal."""
        if not self.ckpt_path.exists():
            raise SpaceError(
                f"nothing to resume: {self.ckpt_path} does not exist", hint="drop --resume to start a new run"
            )
        ck = load_checkpoint(self.ckpt_path)
        require_space(ck, self.space_text, self.space.name, self.ckpt_path)
        mine = self.cfg.model_dump(mode="json")
        theirs = dict(ck.get("config") or {})
        for key, default in (TrainConfig().model_dump(mode="json") | LEGACY_SETTINGS).items():
            theirs.setdefault(key, default)  # settings added since had, in older runs, their value then
        if theirs != mine:
            diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
            raise SpaceError(
                f"--resume with different settings than the checkpoint: {diff}",
                hint="use the same options as the interrupted run",
            )
        load_weights(self.model, ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.start_epoch = ck["epoch"]
        self.start_step = ck.get("step", 0)
        if self.start_step >= self.steps_per_epoch:
            raise SpaceError(
                f"{self.ckpt_path} stopped at step {self.start_step} of an epoch, but an epoch now has "
                f"{self.steps_per_epoch} steps",
                hint="resume with the same data as the interrupted run",
            )
        if self.start_step:
            self.sums = dict(ck["epoch_sums"])
        rng = ck.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.history = [EpochMetrics(**m) for m in ck.get("metrics", [])]

    @property
    def global_step(self) -> int:
        """Optimizer steps done since the run began (the resumed part included)."""
        return self.start_epoch * self.steps_per_epoch + self.start_step

    def train_epoch(
        self,
        epoch: int,
        tick: Callable[[float, float, float], None],
        first_step: int = 0,
        after_step: Callable[[int, int], bool] | None = None,
    ) -> tuple[float, float, float] | None:
        """One epoch of steps from ``first_step``; returns (mean loss, accuracy, images/s) over the
        sampled sub-networks, or None when ``after_step(epoch, steps done)`` stopped it early."""
        from trionet_dsl.train.data import iterate

        cfg, model, net, dev = self.cfg, self.model, self.net, self.device
        net.train()
        t0 = time.perf_counter()
        if first_step == 0:
            self.sums = {"seen": 0, "correct": 0, "loss_sum": 0.0}
        sums, seen0 = self.sums, self.sums["seen"]

        def ips() -> float:
            return (sums["seen"] - seen0) / max(1e-9, time.perf_counter() - t0)

        # this rank's contiguous share of each global batch (augmentation is per sample, so the
        # shards of all ranks are exactly the batch one process would take); only it is decoded
        batches = iterate(
            self.data,
            "train",
            cfg.batch_size,
            epoch,
            cfg.seed,
            augment=cfg.augment,
            drop_last=True,
            start=first_step,
            rank=self.rank,
            world=self.world,
        )
        for step, (xb, yb) in enumerate(batches, start=first_step):
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            self.opt.zero_grad(set_to_none=True)
            plan = (
                plan_step(self.space, cfg, epoch, step, epoch * self.steps_per_epoch + step)
                if self.is_supernet
                else None
            )
            archs: list[Arch] | list[None] = plan.archs if plan is not None else [None]
            teacher = None  # the largest sub-network's logits, under in-place distillation
            step_sums = [0, 0, 0.0]  # correct, seen, loss sum of this step, this rank
            for i, arch in enumerate(archs):
                if arch is not None:
                    assert isinstance(model, Supernet)  # only a supernet run samples archs
                    model.activate(arch)
                with autocast(dev, cfg.precision):
                    logits = net(xb)
                loss = subnet_loss(logits, yb, cfg, teacher)
                if i == 0 and plan is not None and plan.teacher:
                    teacher = logits.detach()
                self.scaler.scale(loss / len(archs)).backward()
                step_sums[0] += (logits.argmax(1) == yb).sum().item()
                step_sums[1] += len(yb)
                step_sums[2] += loss.item() * len(yb)
            if self.world > 1:
                if self.is_supernet:  # DDP averaged a fixed arch's gradients during backward
                    dist_.all_reduce_grads(model.parameters())
                step_sums = dist_.all_reduce_sum([float(v) for v in step_sums])
            sums["correct"] += int(step_sums[0])
            sums["seen"] += int(step_sums[1])
            sums["loss_sum"] += step_sums[2]
            self.scaler.step(self.opt)  # a plain opt.step() unless fp16 scales the loss
            self.scaler.update()
            self.sched.step()
            tick(sums["loss_sum"] / sums["seen"], sums["correct"] / sums["seen"], ips())
            if after_step is not None and after_step(epoch, step + 1):
                return None
        seen = max(1, sums["seen"])
        return sums["loss_sum"] / seen, sums["correct"] / seen, ips()

    def validate(self) -> float:
        """Validation accuracy, measured by rank 0 alone (BN unsynchronised) and sent to every rank."""
        val = 0.0
        if dist_.is_main():
            from trionet_dsl.nn.ops.sync_bn import sync_paused

            with sync_paused(self.model):
                val = self._validate()
        return dist_.broadcast_float(val)

    def _validate(self) -> float:
        """Validation accuracy; a supernet's running BN statistics are put back afterwards."""
        saved = None
        # a supernet's running BN stats mix every sub-network: measure with its own, then put them back
        if isinstance(self.model, Supernet):
            self.model.activate(self.eval_arch)
            saved = {k: v.clone() for k, v in self.model.state_dict().items() if "running_" in k or "batches" in k}
            recalibrate_bn(self.model, self.calib, self.cfg.precision)
        val = evaluate_split(self.model, self.data, channels_last=self.cfg.channels_last, precision=self.cfg.precision)
        if saved is not None:
            self.model.load_state_dict(saved, strict=False)
        return val

    def save(self, epoch: int, step: int = 0) -> None:
        """The checkpoint after ``epoch`` finished epochs and ``step`` steps of the next, written
        atomically (at an epoch's end also ``best.pt`` when it is the best so far, and metrics);
        rank 0 writes, the other ranks hold the same state and write nothing."""
        if not dist_.is_main():
            return
        rng: dict[str, object] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        payload = {
            "kind": "supernet" if self.is_supernet else "arch",
            "space_text": self.space_text,
            "arch_text": self.arch_text,
            "sharing": self.cfg.sharing,
            "config": self.cfg.model_dump(mode="json"),
            "epoch": epoch,
            "step": step,
            "model": to_cpu(self.model.state_dict()),
            "optimizer": to_cpu(self.opt.state_dict()),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": rng,
            "epoch_sums": dict(self.sums) if step else {},
            "metrics": [h.as_dict() for h in self.history],
            "data": self.data.meta() if hasattr(self.data, "meta") else {},
            "world_size": self.world,  # for the record: --resume may use another process count
            "compile": self.compile_mode,  # for the record: a speed setting, --resume may change it
        }
        save_checkpoint(self.ckpt_path, payload)
        if step:  # mid-epoch: no validation yet, so best.pt and metrics.jsonl stay as they are
            return
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
    device: str | torch.device = "auto",
    save_every: int | None = None,
    steps: int | None = None,
    tensorboard: str | Path | None = None,
    log_every: int = 50,
    compile_mode: str = "off",
    compile_backend: str = "inductor",
) -> list[EpochMetrics]:
    """Train and checkpoint into ``out_dir`` (``supernet.pt`` or ``model.pt``, ``best.pt``, ``metrics.jsonl``).

    A folder that already holds a run is continued (``resume``) or replaced (``overwrite``),
    never silently overwritten; ``max_memory`` (bytes) bounds a supernet's estimated memory.
    ``device``: auto | cpu | cuda | cuda:N | mps. ``save_every``: also checkpoint every that many
    optimizer steps inside an epoch. ``steps``: stop (checkpoint written) once the run has made
    that many optimizer steps in all, counting the part before a resume; the learning-rate
    schedule stays the one of ``cfg.epochs``, so ``--resume`` without the cap continues the run.
    ``tensorboard``: a TensorBoard log folder for the epoch's metrics and,
    every ``log_every`` steps, the running loss, accuracy, learning rate and images/s.
    ``compile_mode`` (off | default | reduce-overhead | max-autotune) compiles a fixed arch's training
    steps with ``torch.compile`` and ``compile_backend``; a supernet is refused (see
    :mod:`trionet_dsl.train.compiling`). It is a speed setting, not in ``cfg``: ``--resume`` may change it.
    Under torchrun (or an initialised process group) every rank calls this with the same
    arguments; ``cfg.batch_size`` is the global batch (module docstring).
    """
    out = Path(out_dir)
    check_out_dir(out)
    for name, value in (("--save-every", save_every), ("--steps", steps)):
        if value is not None and value < 1:
            raise SpaceError(f"{name} {value} must be at least 1", hint=f"drop {name}, or give a step count >= 1")
    check_compile_mode(compile_mode)
    if isinstance(target, ResolvedSpace):
        refuse_supernet(compile_mode, target.name)
    dev = dist_.rank_device(device)  # under torchrun: this rank's own GPU
    check_precision(cfg.precision, dev)
    if data.num_train // cfg.batch_size == 0:
        raise SpaceError(
            f"an epoch would have no training step: {data.num_train} training image(s) but "
            f"--batch-size {cfg.batch_size} (incomplete batches are dropped)",
            hint=f"use --batch-size {max(1, data.num_train)} or lower, or more data",
        )
    dist_.local_batch(cfg.batch_size, dist_.world())  # refused before any process group work
    dist_.init(dev)  # under torchrun; the group stays up for a later train() in this process
    history = _train(
        target,
        data,
        cfg,
        out,
        dev,
        resume,
        progress and dist_.is_main(),
        stop_after_epoch,
        on_epoch,
        overwrite,
        max_memory,
        save_every,
        steps,
        tensorboard,
        log_every,
        compile_mode,
        compile_backend,
    )
    dist_.barrier()  # rank 0's last checkpoint is on disk before any rank returns
    return history


def _train(
    target: ResolvedSpace | LoadedArch,
    data: DataBundle,
    cfg: TrainConfig,
    out: Path,
    dev: torch.device,
    resume: bool,
    progress: bool,
    stop_after_epoch: int | None,
    on_epoch: Callable[[EpochMetrics], None] | None,
    overwrite: bool,
    max_memory: int | None,
    save_every: int | None,
    steps: int | None,
    tensorboard: str | Path | None,
    log_every: int,
    compile_mode: str = "off",
    compile_backend: str = "inductor",
) -> list[EpochMetrics]:
    """:func:`train` once the options are checked (and the process group, if any, is up)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    out.mkdir(parents=True, exist_ok=True)
    run = _Run(target, data, cfg, out, max_memory, dev, compile_mode, compile_backend)
    if not resume and not overwrite and run.ckpt_path.exists():
        raise SpaceError(
            f"--out {out} already holds a run ({run.ckpt_path.name})",
            file=str(out),
            hint="continue it with --resume, start over with --overwrite, or give another --out",
        )
    if resume:
        run.resume()
    dist_.barrier()  # every rank has checked the folder (and read the checkpoint) before rank 0 writes
    spe = run.steps_per_epoch
    sink = tensorboard_sink(tensorboard) if dist_.is_main() else None  # under torchrun, rank 0 logs
    running: dict[str, float] = {}  # the epoch's running loss/accuracy/throughput, for the sink

    def after_step(epoch: int, done: int) -> bool:
        """Mid-epoch: checkpoint every ``save_every`` steps, and stop (saved) at the ``steps`` cap."""
        if sink is not None and (epoch * spe + done) % log_every == 0:
            sink.scalars("train", epoch * spe + done, {**running, "lr": float(run.sched.get_last_lr()[0])})
        if done >= spe:  # the epoch's end saves, with validation
            return False
        total = epoch * spe + done
        stop = steps is not None and total >= steps
        if stop or (save_every is not None and total % save_every == 0):
            run.save(epoch, done)
        return stop

    columns = [
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f} {task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
    ]
    with (
        Progress(*columns, disable=not progress, transient=False) as bar,
        closing(sink),
        compile_scope(compile_mode),  # several archs compiled in one process (rank) keep compiling
    ):
        for epoch in range(run.start_epoch, cfg.epochs):
            if steps is not None and epoch * spe + (run.start_step if epoch == run.start_epoch else 0) >= steps:
                break  # resumed at (or past) the cap: nothing to do
            first = run.start_step if epoch == run.start_epoch else 0
            task = bar.add_task(
                "train", total=spe, completed=first, epoch=f"{epoch + 1}/{cfg.epochs}", loss=0.0, acc=0.0, ips=0.0
            )

            def tick(lo: float, ac: float, ip: float, task: TaskID = task) -> None:
                bar.update(task, advance=1, loss=lo, acc=ac, ips=ip)
                running.update(loss=lo, accuracy=ac, images_per_s=ip)

            result = run.train_epoch(epoch, tick, first, after_step)
            if result is None:  # stopped at the --steps cap, checkpoint written
                if progress:
                    bar.console.print(f"stopped after {steps} step(s) (--steps): saved {run.ckpt_path}")
                break
            loss, acc, ips = result
            # get_last_lr is typed float | Tensor; LambdaLR of a float lr gives floats
            m = EpochMetrics(epoch + 1, loss, acc, run.validate(), ips, float(run.sched.get_last_lr()[0]))
            run.history.append(m)
            if sink is not None:
                sink.scalars("epoch", (epoch + 1) * spe, {k: v for k, v in m.as_dict().items() if k != "epoch"})
            if progress:
                note = " (largest sub-network, BN recalibrated)" if run.is_supernet else ""
                bar.console.print(
                    f"epoch {m.epoch}: loss {m.train_loss:.4f} train acc {m.train_acc:.4f} "
                    f"val acc {m.val_acc:.4f}{note}"
                )
            run.save(epoch + 1)
            if on_epoch is not None:
                on_epoch(m)
            if steps is not None and (epoch + 1) * spe >= steps:
                break
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
                raise KeyboardInterrupt
    return run.history

"""One supernet training step: which sub-networks it trains, and each one's loss.

Kept apart from the loop so the options that decide how well a supernet *ranks* sub-networks
(sampling rule, warm-up of the largest sub-network, in-place distillation) live in one place:

* ``warmup_largest_steps``: the first k optimizer steps of the run train only the largest
  sub-network (widest, most heads, operators drawn per block), so the shared weights start
  from a trained net before narrow sub-networks pull on them.
* ``distill`` (in-place distillation, Yu et al. 2020 BigNAS; Cai et al. 2020 Once-for-All): every
  step first trains the largest sub-network with the labels, then the sampled ones against its
  soft predictions (KL divergence at temperature ``distill_temperature``, scaled by T²), not the
  labels. The teacher's logits are detached: no gradient flows into it from the students.

The sub-networks of step ``t`` of epoch ``e`` come from ``Random(f"{seed}/{e}/{t}")`` and are
drawn in the same order with or without distillation (the students first, then the teacher),
so a distilled run trains the same student sequence as the plain one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trionet_dsl.lang.ir import Arch
from trionet_dsl.space.resolve import ResolvedSpace
from trionet_dsl.space.sampling import extreme, sample, sandwich
from trionet_dsl.train.config import TrainConfig


@dataclass(frozen=True)
class StepPlan:
    """The sub-networks of one step, in training order; with ``teacher`` the first is the
    largest, trained on the labels, and every later one learns its soft targets."""

    archs: list[Arch]
    teacher: bool = False


def plan_step(space: ResolvedSpace, cfg: TrainConfig, epoch: int, step: int, global_step: int) -> StepPlan:
    """What step ``step`` of ``epoch`` trains (``global_step``: optimizer steps before it in the run)."""
    rng = random.Random(f"{cfg.seed}/{epoch}/{step}")
    if global_step < cfg.warmup_largest_steps:
        return StepPlan([extreme(space, rng, largest=True)])
    if cfg.sampling == "sandwich":
        archs = sandwich(space, rng, cfg.sandwich_random)  # the largest is already first
        return StepPlan(archs, teacher=cfg.distill)
    archs = [sample(space, rng, cfg.sampling)]
    if not cfg.distill:
        return StepPlan(archs)
    return StepPlan([extreme(space, rng, largest=True), *archs], teacher=True)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student) of the softened predictions, batch mean, times T² (Hinton et al. 2015:
    keeps the gradient's scale independent of T). The teacher is detached."""
    t = temperature
    return (
        F.kl_div(
            F.log_softmax(student.float() / t, dim=1),
            F.log_softmax(teacher.detach().float() / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        * t
        * t
    )


def subnet_loss(
    logits: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, teacher: torch.Tensor | None = None
) -> torch.Tensor:
    """The loss of one sub-network's forward pass: cross-entropy on the labels, or, given the
    teacher's logits, distillation from them."""
    if teacher is None:
        return F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
    return distillation_loss(logits, teacher, cfg.distill_temperature)

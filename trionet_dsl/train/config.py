"""What decides a training run: one pydantic model, validated up front and saved in the checkpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ONE_SHOT_BN_BATCHES = 8
"""How many training batches recalibrate BN before a one-shot measurement, by default: ``trionet
search``, ``trionet rank``, ``export``'s fallback and a supernet's epoch validation all use it, so
they measure alike (``benchmarks/ranking_ablation.py`` measures how ranking depends on it). Here,
torch-free, so the CLI can show it without importing torch."""


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
    seed: int = Field(0, ge=0, lt=2**63)  # torch generators take 64-bit seeds
    channels_last: bool = True
    augment: bool = True
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype; fp16 adds a gradient scaler
    sync_bn: bool = False  # several processes: BN batch statistics over all of them (one process: no-op)
    # supernet training options that decide how well it ranks sub-networks (see train/supernet_step.py)
    distill: bool = True  # in-place distillation: the largest sub-network teaches the sampled ones (ranking ablation)
    distill_temperature: float = Field(1.0, gt=0)
    warmup_largest_steps: int = Field(0, ge=0)  # the run's first k steps train only the largest sub-network


LEGACY_SETTINGS: dict[str, object] = {
    "precision": "fp32",
    "distill": False,
    "distill_temperature": 1.0,
    "warmup_largest_steps": 0,
}
"""What a checkpoint written before a setting existed trained with: ``--resume`` compares against
these, not today's defaults (a default that changed must not silently change an old run)."""

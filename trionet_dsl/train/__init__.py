"""Stage 4, training: config and loop (``loop``), BatchNorm recalibration and evaluation
(``bn``), atomic checkpoints (``checkpoint``), datasets (``data``) and where/in what precision
a run computes (``device``)."""

from trionet_dsl.train.config import TrainConfig
from trionet_dsl.train.evaluate import calibration_batches, evaluate, recalibrate_bn
from trionet_dsl.train.loop import EpochMetrics, train

__all__ = ["EpochMetrics", "TrainConfig", "calibration_batches", "evaluate", "recalibrate_bn", "train"]

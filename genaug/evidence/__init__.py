"""Evidence that synthetic data helps (or not): the ablation harness behind ``genaug compare``,
synthetic-quality metrics behind ``genaug quality`` and the visual report of ``genaug report``.

The harness runs each arm through a training function it is handed (the CLI hands
``training.pipeline.run_training``); arms are registered by name (:func:`register_arm`).
"""

from genaug.evidence._arms import (
    ARMS,
    ORACLE,
    Arm,
    oracle_arm,
    parse_arms,
    parse_seeds,
    register_arm,
)
from genaug.evidence._compare import run_compare
from genaug.evidence._compare_report import compare_markdown
from genaug.evidence._distribution import fid, kid
from genaug.evidence._features import train_feature_extractor
from genaug.evidence._metrics import classification_metrics, per_class_table
from genaug.evidence._quality import measure_quality, quality_table
from genaug.evidence._report import build_report
from genaug.evidence._ssim import ssim
from genaug.evidence._stats import PairedDifference, paired_difference
from genaug.evidence._summary import convergence, summarize

__all__ = [
    "ARMS",
    "ORACLE",
    "Arm",
    "PairedDifference",
    "build_report",
    "classification_metrics",
    "compare_markdown",
    "convergence",
    "fid",
    "kid",
    "measure_quality",
    "oracle_arm",
    "paired_difference",
    "per_class_table",
    "parse_arms",
    "parse_seeds",
    "quality_table",
    "register_arm",
    "run_compare",
    "ssim",
    "summarize",
    "train_feature_extractor",
]

"""Evidence that synthetic data helps (or not): the ablation harness behind ``genaug compare``,
synthetic-quality metrics behind ``genaug quality`` and the visual report of ``genaug report``.
"""

from genaug.evidence._arms import ARMS, COMPARISONS, Arm, arm_config, parse_arms, parse_seeds
from genaug.evidence._compare import (
    METRICS,
    convergence,
    rarest_classes,
    run_compare,
    run_scores,
    summarize,
)
from genaug.evidence._compare_report import compare_chart, compare_markdown, write_compare_outputs
from genaug.evidence._distribution import (
    fid,
    frechet_distance,
    gaussian_statistics,
    kid,
    mean_pairwise_distance,
    mmd2_unbiased,
    polynomial_kernel,
)
from genaug.evidence._features import (
    FeatureExtractor,
    embedding_model,
    load_feature_extractor,
    train_feature_extractor,
)
from genaug.evidence._io import save_figure, write_json, write_text
from genaug.evidence._quality import (
    measure_quality,
    near_duplicate_flags,
    quality_table,
    verification_summary,
)
from genaug.evidence._report import Composition, build_report, composition, thumbnail_grid
from genaug.evidence._ssim import nearest_ssim, ssim, ssim_many
from genaug.evidence._stats import (
    HELPED,
    HURT,
    UNCLEAR,
    PairedDifference,
    describe,
    paired_difference,
    verdict_sentence,
)

__all__ = [
    "ARMS",
    "COMPARISONS",
    "HELPED",
    "HURT",
    "METRICS",
    "UNCLEAR",
    "Arm",
    "Composition",
    "FeatureExtractor",
    "PairedDifference",
    "arm_config",
    "build_report",
    "compare_chart",
    "compare_markdown",
    "composition",
    "convergence",
    "describe",
    "embedding_model",
    "fid",
    "frechet_distance",
    "gaussian_statistics",
    "kid",
    "load_feature_extractor",
    "mean_pairwise_distance",
    "measure_quality",
    "mmd2_unbiased",
    "near_duplicate_flags",
    "nearest_ssim",
    "paired_difference",
    "parse_arms",
    "parse_seeds",
    "polynomial_kernel",
    "quality_table",
    "rarest_classes",
    "run_compare",
    "run_scores",
    "save_figure",
    "ssim",
    "ssim_many",
    "summarize",
    "thumbnail_grid",
    "train_feature_extractor",
    "verdict_sentence",
    "verification_summary",
    "write_compare_outputs",
    "write_json",
    "write_text",
]

"""A trained classifier as genaug's other parts use it: saved with its input contract (class
names, image size, colour mode) and loaded back, for the verifier gate, and its embedding
layer as a feature extractor, for the quality metrics.
"""

from genaug.classifier._contract import load_classifier, save_classifier, sidecar_path
from genaug.classifier._features import (
    FEATURE_LAYER,
    FeatureExtractor,
    embedding_model,
    load_feature_extractor,
)

__all__ = [
    "FEATURE_LAYER",
    "FeatureExtractor",
    "embedding_model",
    "load_feature_extractor",
    "load_classifier",
    "save_classifier",
    "sidecar_path",
]

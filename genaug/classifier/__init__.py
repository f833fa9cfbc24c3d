"""A trained classifier as genaug's other parts use it: saved with its input contract (class
names, image size, colour mode) and loaded back, for the verifier gate and the quality metrics.
"""

from genaug.classifier._contract import load_classifier, save_classifier, sidecar_path

__all__ = ["load_classifier", "save_classifier", "sidecar_path"]

"""genaug: balanced training and measured synthetic augmentation for imbalanced image sets."""

__version__ = "0.1.0"

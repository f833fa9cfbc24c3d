"""Curated datasets for other tools: the balanced real + synthetic training set as files.

:func:`export_dataset` (``genaug export``) splits the real images, adds synthetic images to
the training split only (each class up to a target, under a cap, none derived from a held-out
image) and writes the images (hard links by default), CSV manifests, ``label_map.json``,
``status.json`` and ``env_report.json``, atomically.
"""

from genaug.export._export import (
    ENV_REPORT,
    LABEL_MAP,
    MANIFEST_COLUMNS,
    SPLIT_FOLDERS,
    ExportedImage,
    ExportResult,
    export_dataset,
)
from genaug.export._links import LINK_MODES, FileLinker

__all__ = [
    "ENV_REPORT",
    "LABEL_MAP",
    "LINK_MODES",
    "MANIFEST_COLUMNS",
    "SPLIT_FOLDERS",
    "ExportResult",
    "ExportedImage",
    "FileLinker",
    "export_dataset",
]

"""Dataset indexing, decoding, analysis and the embedded default dataset."""

from genaug.data._analyze import (
    GRAY_MODES,
    analyze_dataset,
    infer_color_mode,
    verify_class_balance,
)
from genaug.data._decode import (
    COLOR_MODES,
    check_color_mode,
    convert_mode,
    load_image,
    resize_array,
)
from genaug.data._index import IMAGE_EXTENSIONS, DatasetIndex, SkippedFile, probe_image

__all__ = [
    "COLOR_MODES",
    "GRAY_MODES",
    "IMAGE_EXTENSIONS",
    "DatasetIndex",
    "SkippedFile",
    "analyze_dataset",
    "check_color_mode",
    "convert_mode",
    "infer_color_mode",
    "load_image",
    "probe_image",
    "resize_array",
    "verify_class_balance",
]

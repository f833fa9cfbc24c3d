"""Dataset indexing, splitting, decoding, analysis and the embedded default dataset."""

from genaug.data._analyze import (
    GRAY_MODES,
    HUGE_PIXELS,
    TINY_SIDE,
    analyze_dataset,
    infer_color_mode,
    verify_class_balance,
)
from genaug.data._decode import (
    COLOR_MODES,
    check_color_mode,
    convert_mode,
    encode_png,
    load_image,
    resize_array,
)
from genaug.data._embedded import digits_longtail
from genaug.data._headers import read_header
from genaug.data._index import (
    IMAGE_EXTENSIONS,
    SKIP_KINDS,
    DatasetIndex,
    SkippedFile,
    probe_image,
    skipped_summary,
)
from genaug.data._splits import DatasetSplits, split_dataset

__all__ = [
    "COLOR_MODES",
    "GRAY_MODES",
    "HUGE_PIXELS",
    "IMAGE_EXTENSIONS",
    "SKIP_KINDS",
    "TINY_SIDE",
    "DatasetIndex",
    "DatasetSplits",
    "SkippedFile",
    "analyze_dataset",
    "check_color_mode",
    "convert_mode",
    "digits_longtail",
    "encode_png",
    "infer_color_mode",
    "load_image",
    "probe_image",
    "read_header",
    "resize_array",
    "skipped_summary",
    "split_dataset",
    "verify_class_balance",
]

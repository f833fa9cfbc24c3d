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
    channels_of,
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
from genaug.data._splits import DatasetSplits, load_splits, split_dataset
from genaug.data._store import (
    MEMORY_BUDGET_FRACTION,
    PROGRESS_FROM,
    STORE_FORMAT,
    ImageStore,
    StoreDecoder,
    build_store,
    decoded_bytes,
    memory_budget,
    pillow_decoder,
    store_key,
)

__all__ = [
    "COLOR_MODES",
    "GRAY_MODES",
    "HUGE_PIXELS",
    "IMAGE_EXTENSIONS",
    "MEMORY_BUDGET_FRACTION",
    "PROGRESS_FROM",
    "SKIP_KINDS",
    "STORE_FORMAT",
    "TINY_SIDE",
    "DatasetIndex",
    "DatasetSplits",
    "ImageStore",
    "SkippedFile",
    "StoreDecoder",
    "analyze_dataset",
    "build_store",
    "channels_of",
    "convert_mode",
    "decoded_bytes",
    "digits_longtail",
    "encode_png",
    "infer_color_mode",
    "load_splits",
    "load_image",
    "memory_budget",
    "pillow_decoder",
    "probe_image",
    "read_header",
    "resize_array",
    "skipped_summary",
    "split_dataset",
    "store_key",
    "verify_class_balance",
]

"""Real images: from an indexed folder (decoded lazily) or from in-memory arrays."""

from __future__ import annotations

import numpy as np

from genaug.data import COLOR_MODES, DatasetIndex, load_image, resize_array
from genaug.exceptions import ConfigError, DatasetError

#: The colour mode of an in-memory array, by its channel count.
CHANNEL_MODES = {channels: mode for mode, channels in COLOR_MODES.items()}


class RealSource:
    """The real training images of one split (a :class:`~genaug.sources.Source`).

    Parameters
    ----------
    index : DatasetIndex, optional
        Files to decode lazily from disk.
    images, labels : ndarray, optional
        In-memory alternative: ``images`` of shape (N, H, W, C) (or (N, H, W)) and integer
        labels. Arrays keep their own size, channels and dtype unless a loader asks for an
        ``image_size`` (uint8 arrays are then resized; float arrays cannot be).
    class_names : sequence of str, optional
        With arrays: the names of labels ``0..K-1`` (default ``"0"``, ``"1"``, ...).
    """

    def __init__(self, index: DatasetIndex | None = None, *, images=None, labels=None,
                 class_names=None):
        if (index is None) == (images is None):
            raise ValueError("give either a DatasetIndex or in-memory images")
        self.index = index
        if index is not None:
            self.class_names = index.class_names
            self.labels = index.labels
            self.paths = index.paths
            self.ids = index.ids
            self.modes = index.modes
            self.sizes = index.sizes
            self.formats = index.formats
            self.images = None
            return
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise DatasetError(f"images must have shape (N, H, W[, C]), got {images.shape}")
        self.labels = np.asarray(labels, dtype=np.int64).ravel()
        if len(self.labels) != len(images):
            raise DatasetError(f"{len(images)} images but {len(self.labels)} labels")
        if class_names is None:
            k = int(self.labels.max()) + 1 if self.labels.size else 0
            class_names = [str(i) for i in range(k)]
        self.class_names = tuple(str(name) for name in class_names)
        if self.labels.size and not 0 <= self.labels.min() <= self.labels.max() \
                < len(self.class_names):
            raise DatasetError(f"labels must be in 0..{len(self.class_names) - 1} for "
                               f"{len(self.class_names)} classes")
        self.images = images
        self.paths = None
        self.ids = tuple(str(i) for i in range(len(images)))
        self.modes = None
        self.sizes = None
        self.formats = None

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names)).astype(np.int64)

    def image_format(self, image_size, color_mode):
        """The ``(image_size, color_mode)`` a loader delivers for these images.

        Files: ``image_size`` (default ``(256, 256)``) and ``color_mode`` (default ``"rgb"``).
        Arrays keep their own size and channels unless asked otherwise; what cannot be done
        (resizing float arrays, changing their channels) is a :class:`ConfigError` here, before
        any batch is drawn.
        """
        if self.images is None:
            size = (256, 256) if image_size is None else tuple(int(v) for v in image_size)
            return size, color_mode or "rgb"
        own_size, channels = tuple(self.images.shape[1:3]), self.images.shape[3]
        own_mode = CHANNEL_MODES.get(channels)
        if color_mode is not None and color_mode != own_mode:
            raise ConfigError(f"color_mode={color_mode!r} does not match the arrays' "
                              f"{channels} channel(s); leave color_mode=None to keep them")
        if image_size is None or tuple(int(v) for v in image_size) == own_size:
            return None, own_mode
        if self.images.dtype != np.uint8:
            raise ConfigError(f"in-memory {self.images.dtype} images of size {own_size} cannot "
                              f"be resized to image_size={tuple(image_size)}; leave "
                              "image_size=None to keep their size, or pass uint8 images")
        return tuple(int(v) for v in image_size), own_mode

    def load(self, i: int, *, image_size, color_mode: str | None,
             interpolation: str = "bilinear"):
        """Image ``i`` as an array of shape (H, W, C)."""
        if self.paths is not None:
            return load_image(self.paths[i], image_size=image_size,
                              color_mode=color_mode or "rgb", interpolation=interpolation)
        image = self.images[i]
        if image_size is not None and tuple(image.shape[:2]) != tuple(image_size):
            image = resize_array(image, image_size, interpolation)
        return image

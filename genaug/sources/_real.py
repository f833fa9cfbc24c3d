"""Real images: from an indexed folder (decoded lazily) or from in-memory arrays."""

from __future__ import annotations

import numpy as np

from genaug.data import DatasetIndex, load_image, resize_array
from genaug.exceptions import DatasetError


class RealSource:
    """The real training images of one split.

    Parameters
    ----------
    index : DatasetIndex, optional
        Files to decode lazily from disk.
    images, labels : ndarray, optional
        In-memory alternative: ``images`` of shape (N, H, W, C) (or (N, H, W)) and labels.
    """

    def __init__(self, index: DatasetIndex | None = None, *, images=None, labels=None):
        if (index is None) == (images is None):
            raise ValueError("give either a DatasetIndex or in-memory images")
        self.index = index
        if index is not None:
            self.labels = index.labels
            self.paths = index.paths
            self.ids = index.ids
            self.modes = index.modes
            self.formats = index.formats
        else:
            images = np.asarray(images)
            if images.ndim == 3:
                images = images[..., None]
            if images.ndim != 4:
                raise DatasetError(f"images must have shape (N, H, W[, C]), got {images.shape}")
            self.labels = np.asarray(labels, dtype=np.int64).ravel()
            if len(self.labels) != len(images):
                raise DatasetError(f"{len(images)} images but {len(self.labels)} labels")
            self.images = images
            self.paths = None
            self.ids = tuple(str(i) for i in range(len(images)))
            self.modes = None
            self.formats = None

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int, *, image_size, color_mode: str, interpolation: str = "bilinear"):
        """Image ``i`` as an array of shape (H, W, C)."""
        if self.paths is not None:
            return load_image(self.paths[i], image_size=image_size, color_mode=color_mode,
                              interpolation=interpolation)
        image = self.images[i]
        if image_size is not None and tuple(image.shape[:2]) != tuple(image_size):
            if image.dtype != np.uint8:
                raise DatasetError("in-memory float images must already have image_size")
            image = resize_array(image, image_size, interpolation)
        return image

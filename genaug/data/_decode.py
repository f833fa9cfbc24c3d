"""Decoding image files into arrays of a fixed size and colour mode, and encoding arrays as PNG
(PIL, no TensorFlow)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from genaug.exceptions import DatasetError

COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


def channels_of(color_mode: str) -> int:
    """The channel count of ``color_mode`` (``"grayscale"`` 1, ``"rgb"`` 3, ``"rgba"`` 4).

    Raises
    ------
    ValueError
        One line naming the colour modes, for any other value.
    """
    try:
        return COLOR_MODES[color_mode]
    except KeyError:
        raise ValueError(
            f"color_mode must be one of {sorted(COLOR_MODES)}, got {color_mode!r}"
        ) from None


def convert_mode(image: Image.Image, color_mode: str) -> Image.Image:
    """Convert any PIL mode (L, P, RGBA, I;16, I, F, CMYK, ...) to ``color_mode``.

    16-bit and float images are rescaled to 8 bits by their dtype range rather than clipped,
    so a 16-bit scan does not come out white.
    """
    channels_of(color_mode)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if image.mode == "F" and array.max() <= 1.0:
            top = 1.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8), "L")
    elif image.mode == "P":
        # Palette images may carry transparency; RGBA keeps it until the final conversion.
        image = image.convert("RGBA")
    if color_mode == "grayscale":
        return image if image.mode == "L" else image.convert("L")
    if color_mode == "rgb":
        return image if image.mode == "RGB" else image.convert("RGB")
    return image if image.mode == "RGBA" else image.convert("RGBA")


def load_image(
    path,
    *,
    image_size: tuple[int, int] | None = None,
    color_mode: str = "rgb",
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Decode one image file to a ``uint8`` array of shape ``(height, width, channels)``.

    Parameters
    ----------
    path : str or path-like
        Image file (any format PIL reads: png, jpg, bmp, gif, webp, tiff, ...).
    image_size : (height, width) or None
        Output size; ``None`` keeps the file's size.
    color_mode : {"grayscale", "rgb", "rgba"}
    interpolation : {"nearest", "bilinear", "bicubic", "lanczos", "area"}
    """
    with Image.open(path) as image:
        if image_size is not None and image.format == "JPEG":
            # DCT-domain downscaling: decoding a large JPEG at reduced size is much faster.
            image.draft(image.mode, (image_size[1], image_size[0]))
        image.seek(0)
        image = convert_mode(image, color_mode)
        return resize_array(np.asarray(image), image_size, interpolation)


def resize_array(
    array: np.ndarray, image_size: tuple[int, int] | None, interpolation: str = "bilinear"
) -> np.ndarray:
    """Resize a ``uint8`` HxW or HxWxC array; always returns HxWxC."""
    if array.ndim == 2:
        array = array[:, :, None]
    if image_size is not None and tuple(array.shape[:2]) != tuple(image_size):
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        source = array[:, :, 0] if array.shape[2] == 1 else array
        resized = Image.fromarray(source, mode).resize(
            (image_size[1], image_size[0]), INTERPOLATIONS[interpolation]
        )
        array = np.asarray(resized)
        if array.ndim == 2:
            array = array[:, :, None]
    return array


def encode_png(image) -> bytes:
    """PNG bytes of a PIL image or a uint8 array (HxW, HxWx1, HxWx3 or HxWx4)."""
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            raise DatasetError(f"images must be uint8 arrays to be written, got {array.dtype}")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        image = Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

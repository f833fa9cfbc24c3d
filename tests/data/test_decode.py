"""Decoding: any PIL mode and size to the configured colour mode and size, lazily, from disk."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from genaug.data import channels_of, convert_mode, load_image, resize_array

# (PIL mode written, file extension): the mixed bag real datasets contain.
MODES = [("RGB", "png"), ("RGBA", "png"), ("L", "png"), ("P", "png"), ("I;16", "png"),
         ("1", "png"), ("LA", "png"), ("RGB", "jpg"), ("L", "jpg"), ("CMYK", "jpg"),
         ("P", "gif"), ("RGB", "bmp"), ("RGBA", "webp")]


def write(path, array_or_image, mode=None):
    image = array_or_image if isinstance(array_or_image, Image.Image) else \
        Image.fromarray(array_or_image) if mode is None else \
        Image.fromarray(array_or_image).convert(mode)
    image.save(path)
    return path


@pytest.fixture
def colour_image(tmp_path):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("mode, ext", MODES)
@pytest.mark.parametrize("color_mode, channels", [("grayscale", 1), ("rgb", 3)])
def test_any_mode_decodes_to_the_configured_mode_and_size(tmp_path, colour_image, mode, ext,
                                                          color_mode, channels):
    if mode == "I;16":
        grey = np.asarray(colour_image.convert("L"), dtype=np.uint16) * 257
        image = Image.fromarray(grey)
    else:
        image = colour_image.convert(mode)
    path = tmp_path / f"img.{ext}"
    image.save(path)
    out = load_image(path, image_size=(16, 8), color_mode=color_mode)
    assert out.shape == (16, 8, channels) and out.dtype == np.uint8
    native = load_image(path, image_size=None, color_mode=color_mode)
    assert native.shape == (12, 20, channels)


def test_rgb_pixels_and_grayscale_luma(tmp_path):
    pixels = np.zeros((4, 4, 3), np.uint8)
    pixels[..., 0] = 255  # pure red
    path = write(tmp_path / "red.png", pixels)
    assert np.array_equal(load_image(path), pixels)
    grey = load_image(path, color_mode="grayscale")
    assert grey.shape == (4, 4, 1) and np.all(grey == 76)  # ITU-R 601 luma of red


def test_sixteen_bit_images_are_rescaled_not_clipped(tmp_path):
    ramp = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)
    path = write(tmp_path / "ramp16.png", ramp)
    with Image.open(path) as image:
        assert image.mode == "I;16"
    out = load_image(path, color_mode="grayscale")[..., 0]
    assert out.min() == 0 and out.max() == 255
    assert abs(float(out.mean()) - 127.5) < 1.0  # not a white image
    assert np.array_equal(load_image(path, color_mode="rgb")[..., 1], out)


def test_float_and_32_bit_modes(tmp_path):
    unit = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    assert convert_mode(Image.fromarray(unit, "F"), "grayscale").getextrema() == (0, 255)
    wide = Image.fromarray((np.arange(64, dtype=np.int32) * 1000).reshape(8, 8), "I")
    assert convert_mode(wide, "grayscale").getextrema()[1] == 245  # 63000 / 65535 * 255


def test_palette_with_transparency_and_rgba_mode(tmp_path):
    image = Image.new("P", (6, 6))
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    image.info["transparency"] = 0
    path = tmp_path / "transparent.png"
    image.save(path)
    assert load_image(path, color_mode="rgba").shape == (6, 6, 4)
    assert load_image(path, color_mode="rgb").shape == (6, 6, 3)


def test_tiny_and_extreme_aspect_images_are_resized(tmp_path):
    one = write(tmp_path / "one.png", np.full((1, 1, 3), 200, np.uint8))
    assert np.all(load_image(one, image_size=(16, 16)) == 200)
    strip = write(tmp_path / "strip.png", np.zeros((1, 300), np.uint8))
    assert load_image(strip, image_size=(16, 16), color_mode="grayscale").shape == (16, 16, 1)


def test_large_jpeg_is_drafted_then_resized(tmp_path):
    rng = np.random.default_rng(1)
    big = write(tmp_path / "big.jpg", rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    assert load_image(big, image_size=(24, 32)).shape == (24, 32, 3)
    assert load_image(big, image_size=(24, 32), color_mode="grayscale").shape == (24, 32, 1)


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), (200 * (i == 0), 0, 0)) for i in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = load_image(path)
    assert out.shape == (8, 8, 3) and out[..., 0].mean() > 150


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic", "lanczos", "area"])
def test_interpolations(tmp_path, colour_image, interpolation):
    path = tmp_path / "x.png"
    colour_image.save(path)
    assert load_image(path, image_size=(5, 7), interpolation=interpolation).shape == (5, 7, 3)


def test_decoding_is_lazy_and_reads_the_file_each_time(tmp_path):
    path = write(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    assert load_image(path).max() == 0
    write(path, np.full((4, 4, 3), 9, np.uint8))
    assert load_image(path).max() == 9


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_corrupt_files_raise_for_the_caller_to_skip(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(Exception):  # noqa: B017 - PIL raises several types
        load_image(path, image_size=(8, 8))


def test_bad_colour_mode_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match=r"color_mode must be one of .*'bgr'"):
        channels_of("bgr")
    with pytest.raises(ValueError, match="color_mode must be one of"):
        load_image(write(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8)), color_mode="hsv")


def test_resize_array_shapes():
    assert resize_array(np.zeros((4, 6), np.uint8), None).shape == (4, 6, 1)
    assert resize_array(np.zeros((4, 6), np.uint8), (8, 3)).shape == (8, 3, 1)
    assert resize_array(np.zeros((4, 6, 3), np.uint8), (2, 2)).shape == (2, 2, 3)
    same = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert resize_array(same, (4, 4)) is same

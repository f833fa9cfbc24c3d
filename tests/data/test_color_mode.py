"""``infer_color_mode``: what ``--color-mode auto`` stands for, decided from the data."""

from genaug.data import DatasetIndex, infer_color_mode


def test_mostly_single_channel_images_are_grayscale(image_folder_factory):
    gray = image_folder_factory({"a": 4, "b": 2}, mode="L")
    assert infer_color_mode(DatasetIndex.load(gray)) == "grayscale"
    sixteen_bit = image_folder_factory({"a": 3}, mode="I;16")
    assert infer_color_mode(DatasetIndex.load(sixteen_bit)) == "grayscale"


def test_colour_palette_and_unvalidated_indexes_are_rgb(image_folder_factory):
    assert infer_color_mode(DatasetIndex.load(image_folder_factory({"a": 4}))) == "rgb"
    assert infer_color_mode(DatasetIndex.load(image_folder_factory({"a": 4}, mode="P"))) == "rgb"
    gray = image_folder_factory({"a": 4}, mode="L")
    assert infer_color_mode(DatasetIndex.load(gray, validate=False)) == "rgb"  # no modes known

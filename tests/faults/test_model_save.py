"""Saving a classifier: a full disk keeps the previous model and its sidecar, and a model
and a sidecar from two different saves are never read as a pair."""

from __future__ import annotations

import errno
import zipfile

import pytest

from genaug.classifier import load_classifier, save_classifier, sidecar_path
from genaug.exceptions import ConfigError, OutputError

CONTRACT = {"image_size": (4, 4), "color_mode": "grayscale"}


def tiny_model(classes: int):
    import keras

    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(classes, activation="softmax")])


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_mid_save_keeps_the_previous_model_and_sidecar(tmp_path, monkeypatch):
    path = tmp_path / "models" / "clf.keras"
    save_classifier(tiny_model(2), path, class_names=["a", "b"], **CONTRACT)
    before = path.read_bytes(), sidecar_path(path).read_bytes()
    # the weights are the last member Keras writes into the archive: the disk fills there
    monkeypatch.setattr(zipfile.ZipFile, "writestr", no_space)
    with pytest.raises(OutputError, match="cannot save the model .*No space left on device"):
        save_classifier(tiny_model(3), path, class_names=["a", "b", "c"], **CONTRACT)
    monkeypatch.undo()
    assert (path.read_bytes(), sidecar_path(path).read_bytes()) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["clf.json", "clf.keras"]
    model, info = load_classifier(path)
    assert info["class_names"] == ["a", "b"] and model.output_shape == (None, 2)


def test_a_sidecar_of_another_save_is_refused(tmp_path):
    old, new = tmp_path / "old" / "clf.keras", tmp_path / "new" / "clf.keras"
    save_classifier(tiny_model(2), old, class_names=["a", "b"], **CONTRACT)
    save_classifier(tiny_model(3), new, class_names=["a", "b", "c"], **CONTRACT)
    # what a kill between the sidecar's rename and the model's leaves: the new sidecar beside
    # the old model (and the other way round)
    sidecar_path(old).replace(tmp_path / "old-sidecar.json")
    sidecar_path(new).replace(sidecar_path(old))
    with pytest.raises(ConfigError, match="belongs to another model .*save the model again"):
        load_classifier(old)
    (tmp_path / "old-sidecar.json").replace(sidecar_path(new))
    with pytest.raises(ConfigError, match="belongs to another model"):
        load_classifier(new)

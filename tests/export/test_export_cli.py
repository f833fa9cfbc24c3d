"""``genaug export``: the command, its bad input, and a round trip through genaug's loaders."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import genaug
from genaug.cli import main


def export(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)])


def assert_user_error(result, match: str):
    """Exit 2, exactly one ``Error:`` line, no traceback."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    assert match in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_the_command_reports_counts_and_what_it_left_out(data, cache, tmp_path):
    (cache / "dog" / "dog-000.png").unlink()
    out = tmp_path / "curated"
    result = export(data, "--synthetic-cache", cache, "--out", out)
    assert result.exit_code == 0, result.output
    status = json.loads((out / "status.json").read_text())
    assert f"exported {status['total_images'] + 11} image(s) to {out}" in result.output
    assert "  dog: 2 real + 3 synthetic = 5 (60% synthetic)" in result.output
    assert "problem: 1 record(s) whose image file is missing skipped" in result.output
    assert "2 image(s) derived from validation/test images left out" in result.output
    env = json.loads((out / "env_report.json").read_text())
    assert env["parameters"]["link"] == "hard" and env["parameters"]["synthetic_cap"] == 0.6


#: The command with os.link failing as it does across filesystems (a subprocess: pytest
#: records warnings itself, so only a real run shows what users see).
CROSS_DEVICE_CLI = """
import errno, os
def link(src, dst, **kwargs):
    raise OSError(errno.EXDEV, "Invalid cross-device link")
os.link = link
from genaug.cli import main
main()
"""


def test_the_copy_fallback_is_one_warning_line(data, cache, tmp_path):
    result = subprocess.run([sys.executable, "-c", CROSS_DEVICE_CLI, "export", str(data),
                             "--synthetic-cache", str(cache), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: 44 of 44 file(s) copied instead of hard-linked (on another filesystem); "
        "they take their own disk space"]


@pytest.mark.parametrize("args, match", [
    (["--synthetic-cap", "1.5"], "--synthetic-cap must be in [0, 1)"),
    (["--val-split", "1"], "--val-split must be in [0, 1)"),
    (["--test-split", "0.2", "--test-dir", "{data}"], "give --test-split or --test-dir"),
    (["--target-per-class", "0"], "--target-per-class must be at least 1"),
    (["--synthetic-cache", "{tmp}/missing"], "synthetic cache not found"),
    (["--test-dir", "{tmp}/missing"], "data directory not found"),
])
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(data, tmp_path, args, match):
    args = [a.format(data=data, tmp=tmp_path) for a in args]
    result = export(data, "--out", tmp_path / "exports" / "curated", *args)
    assert_user_error(result, match)
    assert not (tmp_path / "exports").exists()


def test_a_missing_data_folder_and_a_non_empty_out_are_user_errors(data, tmp_path):
    assert_user_error(export(tmp_path / "missing", "--out", tmp_path / "curated"),
                      "data directory not found")
    assert not (tmp_path / "curated").exists()
    out = tmp_path / "curated"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    assert_user_error(export(data, "--out", out),
                      f"--out exists and is not empty: {out}; pass --overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert_user_error(export(data, "--out", data / "curated"), "lies inside the input")
    assert export(data, "--out", out, "--overwrite").exit_code == 0


def test_the_exported_train_csv_round_trips_through_genaug_s_loaders(data, cache, tmp_path):
    out = tmp_path / "curated"
    assert export(data, "--synthetic-cache", cache, "--out", out).exit_code == 0
    status = json.loads((out / "status.json").read_text())
    label_map = json.loads((out / "label_map.json").read_text())
    names = sorted(label_map, key=label_map.get)
    expected = [status["per_class"][name]["total"] for name in names]

    index = genaug.DatasetIndex.load(out / "train.csv", class_names=names)
    assert index.counts().tolist() == expected and not index.skipped

    loader = genaug.BalancedBatchGenerator(out / "train.csv", class_names=names,
                                           balance="none", batch_size=8, image_size=(16, 16),
                                           seed=0)
    labels = np.concatenate([loader[i][1] for i in range(len(loader))])
    assert np.bincount(labels, minlength=len(names)).tolist() == expected

    dataset = genaug.image_dataset_from_directory(
        str(out / "train.csv"), class_names=names, balance="none", shuffle=False,
        batch_size=8, image_size=(16, 16), verbose=False)
    labels = np.concatenate([np.asarray(y) for _, y in dataset])
    assert np.bincount(labels, minlength=len(names)).tolist() == expected

    for split, key in (("val", "validation"), ("test", "test")):
        held = genaug.DatasetIndex.load(out / f"{split}.csv", class_names=names)
        assert dict(zip(names, held.counts().tolist())) == status["per_split"][key]["original"]


def test_a_plain_keras_user_reads_the_split_folders(data, cache, tmp_path):
    import keras

    out = tmp_path / "curated"
    assert export(data, "--synthetic-cache", cache, "--out", out).exit_code == 0
    status = json.loads((out / "status.json").read_text())
    dataset = keras.utils.image_dataset_from_directory(
        out / "train", image_size=(16, 16), batch_size=8, shuffle=False, verbose=False)
    labels = np.concatenate([np.asarray(y) for _, y in dataset])
    assert dict(zip(dataset.class_names, np.bincount(labels).tolist())) == {
        name: row["total"] for name, row in status["per_class"].items()}

"""What the commands print and the options they share.

Warnings are one ``warning: ...`` line each, without the Python file and source line that
raised them; ``--color-mode`` defaults to ``auto`` (resolved from the data) in every command.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from genaug.cli import main

CLI = "from genaug.cli import main; main()"


def test_a_python_warning_prints_as_one_clean_line(image_folder_factory):
    data = image_folder_factory({"a": 3, "b": 3})
    # A subprocess: pytest records warnings itself, so only a real run shows what users see.
    result = subprocess.run([sys.executable, "-c", CLI, "analyze", str(data), "--classes", "a"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["warning: folders not in class_names are ignored: b"]


@pytest.mark.parametrize("command", ["train", "compare", "quality", "fit-generator"])
def test_color_mode_defaults_to_auto_in_every_command(command):
    from genaug.cli import LazyGroup

    options = {p.name: p for p in LazyGroup().get_command(None, command).params}
    assert options["color_mode"].default == "auto"
    assert "auto" in options["color_mode"].type.choices


def test_train_resolves_auto_to_grayscale_on_grayscale_data(image_folder_factory, tmp_path,
                                                            genaug_data_home):
    data = image_folder_factory({"a": 12, "b": 6}, mode="L")
    out, models = tmp_path / "out", tmp_path / "models"
    result = CliRunner().invoke(main, [
        "train", str(data), "--epochs", "1", "--image-size", "16", "--model-width", "8",
        "--batch-size", "8", "--output-dir", str(out), "--model-dir", str(models)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "(grayscale)" in result.output
    assert json.loads((models / "genaug_cnn.json").read_text())["color_mode"] == "grayscale"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["color_mode"] == "grayscale"
    assert json.loads((out / "status.json").read_text())["color_mode"] == "grayscale"

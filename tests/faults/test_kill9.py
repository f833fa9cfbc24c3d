"""kill -9 at many moments of real ``genaug`` processes loses nothing.

Each test runs the command in a subprocess and SIGKILLs it when the files it writes reach a
count (polled, so the kill lands wherever the command then is: mid-image, between an image
and its record, mid-save, between the two renames of a folder), checks what is left, and
runs the same command again."""

from __future__ import annotations

import json
import subprocess
import sys

from _kill_helpers import CLI, count_files, files_with_bytes, genaug_env, run_genaug, siblings
from click.testing import CliRunner

from genaug.cache import META_JSONL, SyntheticCache, cache_in_use
from genaug.cli import main

GENERATE = ("--steps", "1", "--blur-min", "0", "--structure-min", "0", "--phash-max", "-1",
            "--batch-size", "2", "--workers", "1", "--device", "cpu", "--quiet",
            "--no-pixel-check")


def assert_consistent(cache) -> SyntheticCache:
    """Every record has its file, no line is torn or repeated; at most the image being
    committed lacks its record and one temporary file is left; `cache check` says so."""
    opened = SyntheticCache(cache)
    problems = opened.problems
    assert (problems.missing_files, problems.bad_lines, problems.duplicate_ids) == ([], [], [])
    assert len(problems.orphan_files) <= 1 and len(problems.temporary_files) <= 1, problems
    assert not opened.verify_files().unreadable_files
    result = CliRunner().invoke(main, ["cache", "check", str(cache)])
    assert result.exit_code == (1 if problems else 0), result.output
    return opened


def test_generate_killed_anywhere_resumes_to_the_full_plan_without_duplicates(
        plan, generator, tmp_path):
    cache = tmp_path / "cache"
    args = ["generate", "--plan", plan, "--generator", generator, "--synthetic-cache", cache,
            *GENERATE]
    planned = json.loads(plan.read_text())
    total = sum(c["generate"] for c in planned["classes"].values())
    # kill at the n-th file: a temporary image (odd) or an image and its record (even)
    for step, files in enumerate((1, 31, total - 1)):
        outcome = run_genaug(args, cwd=tmp_path, kill_when=lambda f=files: count_files(
            cache, "*.png") + count_files(cache, ".*.tmp") >= f)
        assert outcome.killed, outcome.stderr
        assert_consistent(cache)
        if step == 1:
            repaired = CliRunner().invoke(main, ["cache", "check", str(cache), "--repair"])
            assert repaired.exit_code == 0, repaired.output
            assert not SyntheticCache(cache).problems
    final = run_genaug(args, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    opened = assert_consistent(cache)
    assert not opened.problems
    lines = (cache / META_JSONL).read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == total  # every planned image once, no duplicate line
    assert count_files(cache, "*.png") == total


def test_a_second_generate_on_one_cache_refuses_with_one_line(plan, generator, tmp_path):
    cache = tmp_path / "cache"
    args = ["generate", "--plan", plan, "--generator", generator, "--synthetic-cache", cache,
            *GENERATE]
    first = subprocess.Popen([sys.executable, "-c", CLI, *map(str, args)], cwd=tmp_path,
                             env=genaug_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        while not cache_in_use(cache):  # the first holds the lock now
            assert first.poll() is None, "the first run ended before it locked the cache"
        second = run_genaug(args, cwd=tmp_path)
        locked = cache_in_use(cache)
    finally:
        first.kill()
        first.wait(timeout=60)
    assert locked, "the first run finished before the second was refused: no proof"
    assert second.returncode == 2
    assert second.stderr.splitlines() == [
        f"Error: another process is writing into {cache} (genaug generate, a live run or an "
        "import); wait for it or use another --synthetic-cache"], second.stderr


def export_files(out) -> dict:
    """The export's files, without the times it records."""
    files = files_with_bytes(out)
    files.pop("env_report.json")
    status = json.loads(files.pop("status.json"))
    status.pop("created")
    return {**files, "status.json": status}


def test_export_overwrite_killed_anywhere_leaves_the_previous_export_or_none(
        shapes, tmp_path):
    from genaug.export import export_dataset

    reference = tmp_path / "reference"
    export_dataset(shapes, out_dir=reference, link="copy")
    expected = export_files(reference)
    out = tmp_path / "curated"
    export_dataset(shapes, out_dir=out, link="copy")
    args = ["export", shapes, "--out", out, "--link", "copy", "--overwrite"]

    def tmp_files():
        return sum(count_files(p) for p in out.parent.glob(".curated.*.tmp"))

    def swapping():  # the old folder renamed away, the new one not yet in place
        return any(out.parent.glob(".curated.*.old"))

    kills = 0
    for when in (lambda: tmp_files() >= 1, lambda: tmp_files() >= 12,
                 lambda: tmp_files() >= len(expected), swapping):
        kills += run_genaug(args, cwd=tmp_path, kill_when=when).killed
        if out.exists():
            assert export_files(out) == expected
        else:  # killed between the renames: the previous export waits beside it
            assert any(name.endswith(".old") for name in siblings(out))
    assert kills >= 3  # the renames' window may be missed, the copying is not
    final = run_genaug(args, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert export_files(out) == expected
    assert siblings(out) == []  # what the killed runs left is gone


def test_fit_generator_killed_while_saving_keeps_the_previous_model(shapes, generator,
                                                                    tmp_path):
    from genaug.generation import load_backend

    def load_generator(path):
        load_backend(path, kind="ddpm", device="cpu").close()

    out = tmp_path / "generator"
    args = ["fit-generator", shapes, "--out", out, "--resolution", "16", "--model-size",
            "tiny", "--max-steps", "2", "--batch-size", "8", "--quiet", "--device", "cpu"]
    first = run_genaug(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = files_with_bytes(out)

    def saving(n):
        return lambda: sum(count_files(p) for p in out.parent.glob(".generator.*.tmp")) >= n

    kills = 0
    for when in (saving(2), lambda: any(out.parent.glob(".generator.*.old"))):
        kills += run_genaug(args, cwd=tmp_path, kill_when=when).killed
        if out.exists():
            now = files_with_bytes(out)
            assert sorted(now) == sorted(before)
            load_generator(out)
        else:
            assert any(name.endswith(".old") for name in siblings(out))
    assert kills >= 1
    final = run_genaug(args, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert sorted(files_with_bytes(out)) == sorted(before) and siblings(out) == []
    load_generator(out)



def test_fit_lora_killed_while_saving_keeps_the_previous_adapter(shapes, tiny_sd, tmp_path):
    out = tmp_path / "adapter"
    args = ["fit-lora", shapes, "--sd-model", tiny_sd, "--out", out, "--resolution", "16",
            "--rank", "4", "--max-steps", "2", "--batch-size", "4", "--device", "cpu",
            "--quiet"]
    first = run_genaug(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = files_with_bytes(out)
    # the new adapter's folder has its first file, or the previous one is renamed away
    outcome = run_genaug(args, cwd=tmp_path, kill_when=lambda: any(
        count_files(p) for p in out.parent.glob(".adapter.*.tmp")) or any(
        out.parent.glob(".adapter.*.old")))
    assert outcome.killed, outcome.stderr
    if out.exists():  # the previous adapter, or (killed as the old one was removed) the new
        assert sorted(files_with_bytes(out)) == sorted(before)
        json.loads((out / "genaug_lora.json").read_text())
    else:
        assert any(name.endswith(".old") for name in siblings(out))
    final = run_genaug(args, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert sorted(files_with_bytes(out)) == sorted(before) and siblings(out) == []
    json.loads((out / "genaug_lora.json").read_text())


def test_train_killed_while_saving_and_writing_leaves_whole_outputs_or_none(shapes, tmp_path):
    from PIL import Image

    from genaug.classifier import load_classifier

    out, models = tmp_path / "out", tmp_path / "models"
    args = ["train", shapes, "--epochs", "1", "--image-size", "16", "--model-width", "8",
            "--batch-size", "8", "--quiet", "--output-dir", out, "--model-dir", models]
    model = models / "genaug_cnn.keras"
    readers = {"metrics.json": json.loads, "status.json": json.loads,
               "genaug_cnn.json": json.loads}

    def assert_whole() -> None:
        """Each output is absent or parses; the model is absent, or loads with its sidecar."""
        for folder in (out, models):
            for path in folder.glob("[!.]*") if folder.exists() else ():
                if path.suffix == ".json":
                    readers[path.name](path.read_text())
                elif path.suffix == ".png":
                    with Image.open(path) as image:
                        image.verify()
        if model.exists():
            load_classifier(model)

    def rewritten(path):
        """True once ``path`` is replaced by this run (absent or older before it)."""
        before = path.stat().st_mtime_ns if path.exists() else None
        return lambda: path.exists() and path.stat().st_mtime_ns != before

    # mid-save of the model, between its sidecar and its rename, between metrics and the plot
    for kill_when in (lambda: (models / ".genaug_cnn.tmp.keras").exists(),
                      rewritten(models / "genaug_cnn.json"), rewritten(out / "metrics.json")):
        outcome = run_genaug(args, cwd=tmp_path, kill_when=kill_when)
        assert outcome.killed, outcome.stderr
        assert_whole()
    final = run_genaug(args, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert_whole()
    # the rerun left nothing temporary, its own or the killed runs'
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.png", "metrics.json",
                                                     "status.json"]
    assert sorted(p.name for p in models.iterdir()) == ["genaug_cnn.json", "genaug_cnn.keras"]

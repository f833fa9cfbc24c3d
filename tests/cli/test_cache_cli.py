"""``genaug cache import`` and ``genaug cache check``."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from genaug.cache import META_CSV, META_JSONL, SyntheticCache
from genaug.cli import main
from genaug.sources import CacheSource


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def records(cache) -> list[dict]:
    return [json.loads(line) for line in (cache / META_JSONL).read_text().splitlines()]


@pytest.fixture
def source(image_folder_factory, tmp_path):
    """Images made elsewhere: dog 3, snake 2, plus a corrupt file and a stray text file."""
    root = image_folder_factory({"dog": 3, "snake": 2}, root=tmp_path / "made_elsewhere",
                                seed=7)
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n...")
    (root / "snake" / "prompt.txt").write_text("a snake")
    return root


def test_import_writes_external_records_and_reports_skipped_files(source, tmp_path):
    cache = tmp_path / "cache"
    result = invoke("cache", "import", source, "--synthetic-cache", cache)
    assert result.exit_code == 0, result.output
    assert "imported 5 image(s)" in result.stdout and "(0 already present)" in result.stdout
    assert "broken.png: unreadable or corrupt" in result.stdout
    assert "prompt.txt: not an image file (extension)" in result.stdout
    rows = records(cache)
    assert len(rows) == 5
    assert {r["class"] for r in rows} == {"dog", "snake"}
    for row in rows:
        assert row["generator"] == {"backend": "external", "model": None, "model_hash": None}
        assert row["source_id"] is None
        assert row["attributes"]["imported_from"].startswith(row["class"] + "/")
        assert (cache / row["path"]).is_file()
    assert (cache / META_CSV).is_file()
    assert SyntheticCache(cache, class_names=["dog", "snake"]).counts() == {"dog": 3, "snake": 2}


def test_reimport_adds_nothing(source, tmp_path):
    cache = tmp_path / "cache"
    assert invoke("cache", "import", source, "--synthetic-cache", cache).exit_code == 0
    before = (cache / META_JSONL).read_text()
    files = sorted(p.relative_to(cache) for p in cache.rglob("*.png"))
    again = invoke("cache", "import", source, "--synthetic-cache", cache)
    assert again.exit_code == 0
    assert "imported 0 image(s)" in again.stdout and "(5 already present)" in again.stdout
    assert (cache / META_JSONL).read_text() == before
    assert sorted(p.relative_to(cache) for p in cache.rglob("*.png")) == files


def test_source_map_ids_land_in_records(source, tmp_path):
    source_map = tmp_path / "map.csv"
    source_map.write_text("file,source_id\n"
                          "dog/dog_000.png,dog/real_017.png\n"
                          "./snake/snake_001.png , snake/real_002.png\n")
    cache = tmp_path / "cache"
    result = invoke("cache", "import", source, "--synthetic-cache", cache,
                    "--source-map", source_map)
    assert result.exit_code == 0, result.output
    by_origin = {r["attributes"]["imported_from"]: r["source_id"] for r in records(cache)}
    assert by_origin == {"dog/dog_000.png": "dog/real_017.png", "dog/dog_001.png": None,
                         "dog/dog_002.png": None, "snake/snake_000.png": None,
                         "snake/snake_001.png": "snake/real_002.png"}
    assert "warning" not in result.stderr
    # the leakage guard drops what was derived from a held-out real image
    guarded = CacheSource(cache, class_names=["dog", "snake"],
                          exclude_source_ids={"dog/real_017.png"})
    assert guarded.excluded_leakage == 1 and len(guarded) == 4


def test_source_map_entries_that_match_no_file_are_warned_about(source, tmp_path):
    source_map = tmp_path / "map.csv"
    source_map.write_text("dog/dog_000.png,dog/real_1.png\ndog/dgo_001.png,dog/real_2.png\n")
    result = invoke("cache", "import", source, "--synthetic-cache", tmp_path / "c",
                    "--source-map", source_map)
    assert result.exit_code == 0
    assert "warning: 1 --source-map entry names no imported file: dog/dgo_001.png" \
        in result.stderr


def test_import_only_the_given_classes(source, tmp_path):
    with pytest.warns(UserWarning, match="folders not in class_names are ignored: snake"):
        result = invoke("cache", "import", source, "--synthetic-cache", tmp_path / "c",
                        "--classes", "dog")
    assert result.exit_code == 0 and "imported 3 image(s)" in result.stdout
    assert {r["class"] for r in records(tmp_path / "c")} == {"dog"}


def test_import_keeps_grey_images_grey_and_rescales_16_bit(image_folder_factory, tmp_path):
    # distinct seeds: identical pixels would share one content-hash record id
    root = image_folder_factory({"grey": 1}, mode="L", root=tmp_path / "src", seed=1)
    image_folder_factory({"deep": 1}, mode="I;16", root=root, seed=2)
    image_folder_factory({"alpha": 1}, mode="RGBA", root=root, seed=3)
    image_folder_factory({"pal": 1}, mode="P", root=root, seed=4)
    cache = tmp_path / "cache"
    assert invoke("cache", "import", root, "--synthetic-cache", cache).exit_code == 0
    modes = {}
    for row in records(cache):
        with Image.open(cache / row["path"]) as image:
            modes[row["class"]] = image.mode
            if row["class"] == "deep":
                assert np.asarray(image).max() < 255  # not clipped to white
    assert modes == {"grey": "L", "deep": "L", "alpha": "RGBA", "pal": "RGB"}


def test_imported_files_honour_the_umask(source, tmp_path):
    cache = tmp_path / "cache"
    assert invoke("cache", "import", source, "--synthetic-cache", cache).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    png = next(cache.rglob("*.png"))
    assert stat.S_IMODE(png.stat().st_mode) == expected
    assert stat.S_IMODE((cache / META_CSV).stat().st_mode) == expected


# --- genaug cache check --------------------------------------------------------------------


def test_check_lists_counts_and_problems(source, tmp_path):
    cache = tmp_path / "cache"
    assert invoke("cache", "import", source, "--synthetic-cache", cache).exit_code == 0
    victim = records(cache)[0]
    (cache / victim["path"]).unlink()
    with open(cache / META_JSONL, "a") as handle:
        handle.write("{torn record\n")
    result = invoke("cache", "check", cache, "--classes", "dog")
    assert result.exit_code == 1, result.output  # a torn line: the cache needs --repair
    assert "--repair" in result.stderr
    lines = result.stdout.splitlines()
    usable_dogs = 3 - (victim["class"] == "dog")
    assert lines[0] == f"{usable_dogs} usable record(s) in {cache}"
    assert f"  dog: {usable_dogs}" in lines
    problems = [line for line in lines if line.startswith("problem: ")]
    assert any("1 malformed record line(s) skipped" in p for p in problems)
    assert any("records of classes unknown to the dataset skipped: snake" in p
               for p in problems)
    if victim["class"] == "dog":
        assert any("whose image file is missing" in p for p in problems)


def test_check_without_classes_counts_everything(source, tmp_path):
    cache = tmp_path / "cache"
    invoke("cache", "import", source, "--synthetic-cache", cache)
    result = invoke("cache", "check", cache)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [f"5 usable record(s) in {cache}", "  dog: 3",
                                          "  snake: 2"]


def test_check_reports_leftovers_of_a_kill_and_repair_removes_them(source, tmp_path):
    cache = tmp_path / "cache"
    invoke("cache", "import", source, "--synthetic-cache", cache)
    kept, gone = records(cache)[:2]
    orphan = cache / "dog" / "orphan.png"
    orphan.write_bytes((cache / kept["path"]).read_bytes())
    temporary = cache / "dog" / ".x.png.abc.tmp"
    temporary.write_bytes(b"half")
    (cache / gone["path"]).unlink()
    with open(cache / META_JSONL, "a") as handle:
        handle.write('{"id": "cut')
    result = invoke("cache", "check", cache)
    assert result.exit_code == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem: ")]
    assert problems == ["problem: 1 malformed record line(s) skipped (line 6)",
                        "problem: 1 record(s) whose image file is missing skipped",
                        "problem: 1 image file(s) without a record ignored",
                        "problem: 1 temporary file(s) of an interrupted write: "
                        "dog/.x.png.abc.tmp"]
    repaired = invoke("cache", "check", cache, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert repaired.stdout.splitlines()[:4] == [
        "removed 1 image file(s) without a record: dog/orphan.png",
        "removed 1 temporary file(s): dog/.x.png.abc.tmp",
        f"removed 1 record(s) whose file is missing: {gone['path']}",
        "removed 1 malformed record line(s): line 6"]
    assert not orphan.exists() and not temporary.exists()
    assert [r["id"] for r in records(cache)] == [r["id"] for r in records(cache)
                                                 if (cache / r["path"]).is_file()]
    assert len(records(cache)) == 4 and kept["id"] in {r["id"] for r in records(cache)}
    again = invoke("cache", "check", cache, "--repair")
    assert again.exit_code == 0 and again.stdout.splitlines()[0] == "nothing to repair"


def test_repair_refuses_while_a_writer_holds_the_cache(source, tmp_path):
    from genaug.cache import CacheWriter

    cache = tmp_path / "cache"
    invoke("cache", "import", source, "--synthetic-cache", cache)
    with CacheWriter(cache):
        assert_user_error(invoke("cache", "check", cache, "--repair"),
                          "another process is writing into")


# --- bad input -----------------------------------------------------------------------------


def assert_user_error(result, match):
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("Error: ") and match in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_import_from_a_missing_folder(tmp_path):
    result = invoke("cache", "import", tmp_path / "nope", "--synthetic-cache", tmp_path / "c")
    assert_user_error(result, "data directory not found")
    assert not (tmp_path / "c").exists()


def test_import_into_a_file(source, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep")
    assert_user_error(invoke("cache", "import", source, "--synthetic-cache", blocker),
                      "cannot write synthetic cache")
    assert blocker.read_text() == "keep"


def test_import_with_a_missing_source_map(source, tmp_path):
    result = invoke("cache", "import", source, "--synthetic-cache", tmp_path / "c",
                    "--source-map", tmp_path / "nomap.csv")
    assert_user_error(result, "source map not found")


def test_import_with_a_malformed_source_map(source, tmp_path):
    bad = tmp_path / "map.csv"
    bad.write_text("dog/dog_000.png\n")
    result = invoke("cache", "import", source, "--synthetic-cache", tmp_path / "c",
                    "--source-map", bad)
    assert_user_error(result, "need file,source_id")


def test_check_a_missing_cache(tmp_path):
    assert_user_error(invoke("cache", "check", tmp_path / "nope"), "synthetic cache not found")


def test_import_requires_a_cache_option(source):
    result = invoke("cache", "import", source)
    assert result.exit_code == 2 and "Missing option '--synthetic-cache'." in result.stderr


def test_import_keeps_its_old_cache_flag_for_one_release_out_of_the_help(source, tmp_path):
    assert invoke("cache", "import", source, "--cache", tmp_path / "c").exit_code == 0
    assert len(records(tmp_path / "c")) == 3 + 2
    assert "--cache" not in invoke("cache", "import", "--help").output

import csv
import json

import numpy as np
import pytest

from genaug.cache import META_CSV, META_JSONL, CacheWriter, SyntheticCache
from genaug.exceptions import CacheError
from genaug.sources import CacheSource


def image(value, size=8):
    return np.full((size, size, 3), value, dtype=np.uint8)


def write_cache(root, per_class):
    with CacheWriter(root) as writer:
        for name, n in per_class.items():
            for i in range(n):
                writer.add(image(i), class_name=name, record_id=f"{name}-{i}",
                           generator={"backend": "ddpm", "model": "m", "model_hash": "abc"},
                           seed=i, quality={"blur": {"score": 80.0, "threshold": 60.0,
                                                     "passed": True}})
    return root


def test_records_carry_provenance_and_csv_mirror(tmp_path):
    write_cache(tmp_path, {"dog": 2})
    cache = SyntheticCache(tmp_path, class_names=["dog", "cat"])
    assert len(cache) == 2 and not cache.problems
    record = cache.records[0]
    for key in ("id", "class", "path", "generator", "prompt", "negative_prompt", "attributes",
                "seed", "steps", "guidance_scale", "source_id", "quality", "attempts", "created"):
        assert key in record
    assert record["path"] == "dog/dog-0.png"
    assert cache.counts() == {"dog": 2, "cat": 0}
    with open(tmp_path / META_CSV) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["dog-0", "dog-1"]
    assert cache.provenance()["quality_thresholds"] == {"blur": 60.0}


def test_adding_an_existing_id_writes_nothing(tmp_path):
    write_cache(tmp_path, {"dog": 2})
    with CacheWriter(tmp_path) as writer:
        assert writer.add(image(0), class_name="dog", record_id="dog-0") is None
        assert writer.add(image(9), class_name="dog") is not None
    assert len((tmp_path / META_JSONL).read_text().splitlines()) == 3


def test_malformed_cache_is_reported_and_skipped(tmp_path):
    write_cache(tmp_path, {"dog": 3, "emu": 1})
    (tmp_path / "dog" / "dog-1.png").unlink()  # record without file
    (tmp_path / "dog" / "stray.png").write_bytes((tmp_path / "dog" / "dog-0.png").read_bytes())
    with open(tmp_path / META_JSONL, "a") as handle:
        handle.write("{not json\n")
        handle.write(json.dumps({"id": "x"}) + "\n")
        handle.write('{"id": "dog-0", "class": "dog", "path": "dog/dog-0.png"}\n')
    cache = SyntheticCache(tmp_path, class_names=["dog", "cat"])
    assert [r["id"] for r in cache.records] == ["dog-0", "dog-2"]
    problems = cache.problems
    assert problems.missing_files == ["dog/dog-1.png"]
    assert problems.orphan_files == ["dog/stray.png"]
    assert [n for n, _ in problems.bad_lines] == [5, 6]
    assert "missing class, path" in problems.bad_lines[1][1]
    assert problems.unknown_classes == {"emu": 1}
    assert problems.duplicate_ids == ["dog-0"]
    assert any("line 5, 6" in line for line in problems.lines())


def test_torn_last_line_from_a_crash_stays_separate(tmp_path):
    write_cache(tmp_path, {"dog": 1})
    with open(tmp_path / META_JSONL, "a") as handle:
        handle.write('{"id": "dog-9", "cla')  # interrupted mid-write
    with CacheWriter(tmp_path) as writer:
        writer.add(image(5), class_name="dog", record_id="dog-5")
    cache = SyntheticCache(tmp_path)
    assert [r["id"] for r in cache.records] == ["dog-0", "dog-5"]
    assert len(cache.problems.bad_lines) == 1


def test_no_temporary_files_left_behind(tmp_path):
    write_cache(tmp_path, {"dog": 3})
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_missing_cache_directory(tmp_path):
    with pytest.raises(CacheError, match="synthetic cache not found"):
        SyntheticCache(tmp_path / "nope")


def test_invalid_class_name_for_a_path(tmp_path):
    with CacheWriter(tmp_path) as writer, pytest.raises(CacheError, match="invalid class"):
        writer.add(image(0), class_name="../escape")


def test_leakage_guard_excludes_images_derived_from_held_out_images(tmp_path):
    with CacheWriter(tmp_path) as writer:
        writer.add(image(1), class_name="dog", source_id="dog/train_1.png")
        writer.add(image(2), class_name="dog", source_id="dog/test_7.png")
        writer.add(image(3), class_name="dog", source_id=None)
    source = CacheSource(tmp_path, class_names=["dog"], exclude_source_ids={"dog/test_7.png"})
    assert len(source) == 2 and source.excluded_leakage == 1
    assert all(r["source_id"] != "dog/test_7.png" for r in source.records)


def test_a_synthetic_image_that_is_not_uint8_is_a_cache_error(tmp_path):
    with CacheWriter(tmp_path) as writer, pytest.raises(CacheError, match="must be uint8"):
        writer.add(np.zeros((4, 4, 3), np.float32), class_name="dog")

"""A full disk (ENOSPC) while generating, exporting or writing outputs: one ``Error:`` line,
exit 2, and a cache or export as it was. On a real tiny tmpfs where this machine lets the test
mount one, and by injecting the error at the write call everywhere."""

from __future__ import annotations

import errno
import shutil
import subprocess
import uuid

import pytest
from click.testing import CliRunner

from genaug.cache import SyntheticCache
from genaug.cli import main
from genaug.exceptions import OutputError
from genaug.io import atomic_write_bytes

GENERATE = ("--steps", "1", "--blur-min", "0", "--structure-min", "0", "--phash-max", "-1",
            "--batch-size", "2", "--workers", "1", "--device", "cpu", "--quiet",
            "--no-pixel-check")


@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB tmpfs (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot run mount here")
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def assert_one_error_line(result, match: str) -> None:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and match in lines[-1], result.stderr
    assert not [line for line in lines if line.startswith("Error")][:-1]
    assert "Traceback" not in result.output


def assert_clean_cache(cache) -> None:
    """Every record with its file, every file with its record, nothing temporary."""
    opened = SyntheticCache(cache)
    assert not opened.problems, opened.problems
    assert opened.records  # the images written before the disk filled stay


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_generate_onto_a_full_tmpfs(small_disk, plan, generator):
    cache = small_disk / "cache"
    result = CliRunner().invoke(main, ["generate", "--plan", str(plan), "--generator",
                                       str(generator), "--synthetic-cache", str(cache), *GENERATE])
    assert_one_error_line(result, "No space left on device")
    assert_clean_cache(cache)


def test_generate_when_a_record_cannot_be_written(plan, generator, tmp_path, monkeypatch):
    from genaug.cache import _cache

    real_append, calls = _cache._append, []

    def append_until_full(fd, data):
        calls.append(data)
        if len(calls) == 6:  # the sixth line, after its image was renamed into place
            real_append(fd, data[:10])  # a part of the line reaches the disk, then it is full
            no_space()
        real_append(fd, data)

    monkeypatch.setattr(_cache, "_append", append_until_full)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(main, ["generate", "--plan", str(plan), "--generator",
                                       str(generator), "--synthetic-cache", str(cache), *GENERATE])
    assert_one_error_line(result, "No space left on device")
    assert_clean_cache(cache)
    assert len(SyntheticCache(cache)) == 5


def test_export_onto_a_full_tmpfs(small_disk, shapes):
    out = small_disk / "curated"
    result = CliRunner().invoke(main, ["export", str(shapes), "--out", str(out), "--link",
                                       "copy"])
    assert_one_error_line(result, "No space left on device")
    assert list(small_disk.iterdir()) == []  # no export, no temporary folder


def test_export_when_a_copy_fails(shapes, tmp_path, monkeypatch):
    from genaug.export import _links

    previous = tmp_path / "curated"
    assert CliRunner().invoke(main, ["export", str(shapes), "--out", str(previous),
                                     "--link", "copy"]).exit_code == 0
    before = sorted(p.relative_to(previous) for p in previous.rglob("*"))
    monkeypatch.setattr(_links.shutil, "copy2", no_space)
    result = CliRunner().invoke(main, ["export", str(shapes), "--out", str(previous),
                                       "--link", "copy", "--overwrite"])
    assert_one_error_line(result, "No space left on device")
    assert sorted(p.relative_to(previous) for p in previous.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_output_file_on_a_full_tmpfs_keeps_its_previous_content(small_disk):
    path = small_disk / "metrics.json"
    atomic_write_bytes(path, b"previous")
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write_bytes(path, b"x" * 200_000)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in small_disk.iterdir()] == ["metrics.json"]


def test_an_output_file_when_the_write_fails(tmp_path, monkeypatch):
    import os

    path = tmp_path / "status.json"
    atomic_write_bytes(path, b"previous")
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OutputError, match="cannot write .*No space left on device"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"previous" and os.listdir(tmp_path) == ["status.json"]


def test_export_across_a_real_second_filesystem_copies_instead_of_linking(shapes, tmp_path):
    import os
    from pathlib import Path

    from genaug.exceptions import GenaugWarning
    from genaug.export import export_dataset

    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(shapes).st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    out = other / f"genaug-export-{uuid.uuid4().hex}"
    try:
        with pytest.warns(GenaugWarning, match="copied instead of hard-linked") as caught:
            result = export_dataset(shapes, out_dir=out, link="hard")
        assert "another filesystem" in str(caught[0].message)
        link = result.status["link"]
        assert link["copied_instead_of_hard_link"] == link["files"] == len(result.images)
        for image in result.images:
            assert (out / image.path).read_bytes() == Path(image.original).read_bytes()
            assert os.stat(out / image.path).st_dev != os.stat(image.original).st_dev
    finally:
        shutil.rmtree(out, ignore_errors=True)

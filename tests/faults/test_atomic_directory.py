"""What a killed :func:`genaug.io.atomic_directory` leaves is undone by the next one for the
same folder; a live writer's temporary folder is left alone."""

from __future__ import annotations

import fcntl
import os

import pytest

from genaug.io import atomic_directory


def killed_between_the_renames(path):
    """The state a writer killed after renaming ``path`` away leaves: ``path`` absent, the
    previous folder and the new one beside it, neither locked (its process is gone)."""
    tmp = path.parent / f".{path.name}.abc123.tmp"
    (tmp / "partial").mkdir(parents=True)
    os.replace(path, tmp.with_suffix(".old"))
    return tmp


def test_the_previous_folder_comes_back_when_a_writer_was_killed_between_renames(tmp_path):
    path = tmp_path / "model"
    path.mkdir()
    (path / "weights").write_text("previous")
    killed_between_the_renames(path)
    with pytest.raises(RuntimeError, match="stop"), atomic_directory(path) as tmp:
        assert (path / "weights").read_text() == "previous"  # put back before the new write
        (tmp / "weights").write_text("half")
        raise RuntimeError("stop")
    assert (path / "weights").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_finished_swap_leaves_no_old_folder_and_a_live_writer_keeps_its_own(tmp_path):
    path = tmp_path / "export"
    path.mkdir()
    (tmp_path / ".export.done.old").mkdir()  # killed after the second rename
    live = tmp_path / ".export.live.tmp"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held as a running writer holds its folder
    try:
        with atomic_directory(path) as tmp:
            (tmp / "new").write_text("new")
        assert live.is_dir()
    finally:
        os.close(fd)
    assert (path / "new").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".export.live.tmp", "export"]

"""Writing outputs safely: whole files only (temporary name, then rename), JSON-ready values,
and the package versions every output records."""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from genaug.exceptions import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    Any failure (a full disk, a folder that cannot be written) removes the temporary file
    and raises :class:`OutputError`; ``path`` keeps its previous content."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_files(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            _lock(handle.fileno())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a plain open() would not
            os.replace(tmp, path)  # still open, still locked: no cleaner takes it meanwhile
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a new temporary folder beside ``path`` to fill; when the block ends without an
    error it replaces ``path`` (an old folder there is removed only after the rename), and on
    any error or interrupt it is deleted, so ``path`` is never left half-written.

    A process killed in the middle leaves its temporary folder (and, between the two renames,
    the previous folder under a temporary name, with ``path`` absent); the next call for the
    same ``path`` removes what such a process left and puts the previous folder back."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_siblings(path)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; a plain mkdir would not
        owner = _hold(tmp)
    except OSError as error:
        raise OutputError(f"cannot write to {path}: {error.strerror or error}") from None
    old = tmp.with_suffix(".old")
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise OutputError(f"cannot write to {path}: it exists and is not a folder")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        os.close(owner)
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise OutputError(f"cannot write to {path}: {error.strerror or error}") from None
        raise
    shutil.rmtree(old, ignore_errors=True)
    os.close(owner)


def _hold(folder: Path) -> int:
    """An exclusive lock on ``folder`` (released when its owner exits, even killed): tells
    the temporary folder of a live writer from one a killed writer left."""
    fd = os.open(folder, os.O_RDONLY)
    _lock(fd)
    return fd


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def lock_held(path) -> bool | None:
    """Whether a process holds an exclusive ``flock`` on ``path`` now (this one counts only
    through another open of it); None when ``path`` is absent or the system has no such lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: nothing tells
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # absent, or gone meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _remove_abandoned_siblings(path: Path) -> None:
    """Undo what a killed :func:`atomic_directory` left beside ``path``: its temporary folder
    goes, and the previous folder it had renamed away comes back when ``path`` is absent."""
    for tmp in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")):
        if not tmp.is_dir() or lock_held(tmp) is not False:  # a live writer's, or unknown
            continue
        old = tmp.with_suffix(".old")
        if old.is_dir() and not (path.exists() or path.is_symlink()):
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.old")):
        if old.is_dir() and not old.with_suffix(".tmp").exists():
            shutil.rmtree(old, ignore_errors=True)  # the new folder was already in place


def _remove_abandoned_files(path: Path) -> None:
    """Remove the temporary files that killed :func:`atomic_write_bytes` calls left beside
    ``path`` (a live writer holds a lock on its own)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if tmp.is_file() and lock_held(tmp) is False:
            tmp.unlink(missing_ok=True)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk before it is renamed into
    place, so a power cut after the rename cannot leave empty files."""
    for root, _, files in os.walk(folder):
        for name in files:
            if os.path.islink(os.path.join(root, name)):
                continue  # a symbolic link's target is not ours to flush
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def json_default(value):
    """``json.dumps(default=...)`` for numpy values, paths, sets and tuples."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value):
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_jsonable(value):
    """A plain JSON-ready deep copy: numpy values, paths, tuples converted, NaN -> None."""
    return _finite(json.loads(json.dumps(value, default=json_default)))


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON (NaN becomes null) to ``path``, atomically."""
    text = json.dumps(to_jsonable(data), indent=2) + "\n"
    atomic_write_bytes(Path(path), text.encode("utf-8"))
    return Path(path)


def check_writable(*folders) -> None:
    """Create ``folders`` and write a file in each, so a run fails before its work, not after
    it, when an output folder cannot be written (:class:`~genaug.exceptions.OutputError`)."""
    for folder in folders:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".genaug-write-test"):
                pass
        except OSError as error:
            raise OutputError(f"cannot write to {folder}: {error.strerror or error}") from None


#: The packages whose versions shape genaug's outputs (images, models, scores).
VERSIONED_PACKAGES = ("genaug", "numpy", "torch", "diffusers", "transformers", "safetensors",
                      "tensorflow", "tensorflow-cpu", "keras", "scikit-learn", "pillow",
                      "imagehash", "scipy")


def package_versions() -> dict:
    """Python, the platform and the installed version of each of :data:`VERSIONED_PACKAGES`
    (None when not installed); ``tensorflow`` reports ``tensorflow-cpu`` where that is the
    build installed."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out.get("tensorflow") is None and out.get("tensorflow-cpu"):
        out["tensorflow"] = out["tensorflow-cpu"]
    return out

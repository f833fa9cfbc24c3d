"""Writing outputs safely: whole files only (temporary name, then rename), JSON-ready values."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from genaug.exceptions import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a plain open() would not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a new temporary folder beside ``path`` to fill; when the block ends without an
    error it replaces ``path`` (an old folder there is removed only after the rename), and on
    any error or interrupt it is deleted, so ``path`` is never left half-written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; a plain mkdir would not
    except OSError as error:
        raise OutputError(f"cannot write to {path}: {error.strerror or error}") from None
    old = tmp.with_suffix(".old")
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise OutputError(f"cannot write to {path}: it exists and is not a folder")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


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

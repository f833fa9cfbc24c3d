"""Writing evidence files: every file goes through an atomic write, so a crash never leaves a
half-written JSON, Markdown, HTML or PNG behind."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from genaug.synthetic import atomic_write_bytes


def _json_default(value):
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
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON (NaN becomes null) to ``path`` atomically.

    Parameters
    ----------
    path : path-like
        Destination file; its folder is created.
    data : object
        JSON-serialisable data; numpy scalars and arrays are converted.

    Returns
    -------
    Path
    """
    text = json.dumps(_finite(json.loads(json.dumps(data, default=_json_default))), indent=2)
    atomic_write_bytes(Path(path), (text + "\n").encode("utf-8"))
    return Path(path)


def write_text(path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    atomic_write_bytes(Path(path), text.encode("utf-8"))
    return Path(path)


def save_figure(figure, path, *, dpi: int = 100) -> Path:
    """Render a matplotlib ``Figure`` to PNG bytes and write them to ``path`` atomically.

    Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot), so nothing here
    touches the global pyplot state or needs a display.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def new_figure(width: float, height: float):
    """A fresh headless matplotlib ``Figure`` of ``width`` x ``height`` inches."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))

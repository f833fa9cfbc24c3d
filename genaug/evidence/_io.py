"""Writing evidence files: every file goes through an atomic write, so a crash never leaves a
half-written JSON, Markdown, HTML or PNG behind."""

from __future__ import annotations

import io
from pathlib import Path

from genaug.io import atomic_write_bytes, write_json

__all__ = ["new_figure", "save_figure", "write_json", "write_text"]


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

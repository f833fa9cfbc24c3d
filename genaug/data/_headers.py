"""Header checks of PNG and JPEG files: format, size and mode without decoding a pixel.

A loader that indexes a folder needs, per file, what :func:`~genaug.data.probe_image` reports
(PIL's mode, size and format), but not the decode that proves the pixels are intact: a file
that breaks at decode time is replaced by the loaders anyway. Reading the first bytes and the
last few costs about a quarter of ``PIL.Image.open`` (which also parses ancillary chunks and
runs its plugin detection) and a small fraction of a decode.

The check only ever *accepts*: a file it cannot vouch for (another format, a mode other than
8-bit L/RGB/RGBA, no end marker where a whole file has one, too many pixels) returns None,
and the caller decodes it in full as before, so every skip reason stays PIL's.
"""

from __future__ import annotations

import os
import struct

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The IEND chunk every whole PNG ends with: length 0, type, CRC.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# (bit depth, colour type) -> PIL mode, for the modes TensorFlow decodes to PIL's pixels.
_PNG_MODES = {(8, 0): "L", (8, 2): "RGB", (8, 6): "RGBA"}
# Start-of-frame markers (baseline, extended, progressive, lossless, arithmetic); not DHT
# (C4), JPG (C8) or DAC (CC).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MODES = {1: "L", 3: "RGB"}
# Markers without a length field: TEM and the restart markers.
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])
_JPEG_MAX_SEGMENTS = 64
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)


def read_header(path: str, *, max_pixels: int | None = None):
    """``(mode, (width, height), format)`` of a whole 8-bit PNG or JPEG, read from its
    header and end marker; None when the file needs a full decode to tell (any other case,
    including an unreadable file)."""
    try:
        # os-level calls: a Python file object's buffering costs more than the reads.
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None
    try:
        head = os.read(fd, 33)
        if head.startswith(_PNG_SIGNATURE):
            found = _png(head)
            end = _PNG_END
        elif head.startswith(b"\xff\xd8\xff"):
            found = _jpeg(fd)
            end = b"\xff\xd9"
        else:
            return None
        if found is None:
            return None
        os.lseek(fd, -len(end), os.SEEK_END)
        if os.read(fd, len(end)) != end:
            return None  # truncated, or trailing bytes: PIL judges
    except (OSError, ValueError, IndexError, struct.error):
        return None
    finally:
        os.close(fd)
    width, height = found[1]
    if max_pixels and width * height > max_pixels:
        return None
    return found


def _png(head: bytes):
    # Signature, then IHDR first: length 13, "IHDR", width, height, depth, colour type.
    if head[8:16] != b"\x00\x00\x00\rIHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    mode = _PNG_MODES.get((depth, colour))
    if mode is None or not width or not height:
        return None
    return mode, (width, height), "PNG"


def _jpeg(fd: int):
    """Walk the segments after SOI to the frame header (SOFn)."""
    os.lseek(fd, 2, os.SEEK_SET)
    for _ in range(_JPEG_MAX_SEGMENTS):
        prefix = os.read(fd, 2)
        if len(prefix) < 2 or prefix[0] != 0xFF:
            return None
        marker = prefix[1]
        while marker == 0xFF:  # fill bytes
            marker = os.read(fd, 1)[0]
        if marker in _JPEG_STANDALONE:
            continue
        (length,) = struct.unpack(">H", os.read(fd, 2))
        if marker in _JPEG_FRAMES:
            precision, height, width, components = struct.unpack(">BHHB", os.read(fd, 6))
            mode = _JPEG_MODES.get(components)
            if precision != 8 or mode is None or not width or not height:
                return None
            return mode, (width, height), "JPEG"
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        os.lseek(fd, length - 2, os.SEEK_CUR)
    return None

"""A decoded image store: image files decoded and resized once into one array.

In memory, or as one memory-mapped ``.npy`` file in a store directory, persistent across runs
and processes. By default the pixels come from :func:`~genaug.data.load_image`, the decoder of
the ``PyDataset``, so a stored image equals the decoded file bit for bit; a loader that decodes
otherwise (the ``tf.data`` loader decodes with TensorFlow) passes its own
:class:`StoreDecoder`, whose name and dtype are part of the store's key.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from genaug.data._decode import channels_of, load_image
from genaug.exceptions import OutputError

#: Version of the files a store directory holds; a store of another version is rebuilt.
STORE_FORMAT = 1
#: Share of the available memory ``cache="auto"`` gives the decoded images.
MEMORY_BUDGET_FRACTION = 0.25
#: Sets at least this large show a progress bar while they are decoded.
PROGRESS_FROM = 2000


@dataclass(frozen=True)
class StoreDecoder:
    """How a store's rows are made.

    Attributes
    ----------
    name : str
        Names the decoder and everything of it that changes the pixels (another library or
        version decodes and resizes differently); part of the store's key.
    dtype : numpy dtype
        Of the stored rows: ``uint8`` where the decoder returns whole pixel values, ``float32``
        where it resizes to fractional values (as TensorFlow's bilinear resize does).
    decode_into : callable
        ``decode_into(images, paths) -> {row: "ErrorType: message"}``: fills row ``i`` of
        ``images`` with the pixels of ``paths[i]`` and reports the rows it could not decode
        (left as zeros).
    """

    name: str
    dtype: np.dtype
    decode_into: Callable[[np.ndarray, list[str]], dict[int, str]]


@dataclass
class ImageStore:
    """Decoded images, one row per file.

    Attributes
    ----------
    images : ndarray
        Of shape (N, height, width, channels), in the decoder's dtype (``uint8`` for the
        default); memory-mapped for a store directory.
        Rows of broken files are zeros.
    errors : dict
        ``{row: "ErrorType: message"}`` of the files that could not be decoded.
    path : Path or None
        The ``.npy`` file of a store directory.
    """

    images: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def readable(self) -> np.ndarray:
        """Per row: the file was decoded."""
        ok = np.ones(len(self.images), dtype=bool)
        ok[list(self.errors)] = False
        return ok


def decoded_bytes(count: int, image_size, color_mode: str, dtype=np.uint8) -> int:
    """Bytes that ``count`` decoded images of this size, colour mode and dtype take."""
    return (count * int(image_size[0]) * int(image_size[1]) * channels_of(color_mode)
            * np.dtype(dtype).itemsize)


def memory_budget() -> int:
    """Bytes ``cache="auto"`` may hold in memory: :data:`MEMORY_BUDGET_FRACTION` of the
    memory available now."""
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(available * MEMORY_BUDGET_FRACTION)


def store_key(paths, *, image_size, color_mode: str, interpolation: str,
              decoder: str = "pillow", dtype=np.uint8) -> str:
    """A digest of everything that changes the stored pixels: each file's path, size and
    modification time, the image size, the colour mode, the interpolation, the decoder's name
    and the dtype."""
    digest = hashlib.sha256(json.dumps(
        [list(image_size), color_mode, interpolation, decoder, np.dtype(dtype).str]).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\0{os.fspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def pillow_decoder(*, image_size, color_mode: str, interpolation: str = "bilinear",
                   workers: int | None = None) -> StoreDecoder:
    """The default decoder: :func:`~genaug.data.load_image` in a thread pool (Pillow releases
    the GIL while it decodes), ``uint8`` rows."""
    def decode_into(images, paths):
        return _decode_into(images, paths, image_size, color_mode, interpolation, workers)

    return StoreDecoder("pillow", np.dtype(np.uint8), decode_into)


def build_store(paths, *, image_size, color_mode: str, interpolation: str = "bilinear",
                directory=None, workers: int | None = None,
                decoder: StoreDecoder | None = None) -> ImageStore:
    """Decode ``paths`` once, in parallel, into an :class:`ImageStore`.

    Parameters
    ----------
    paths : sequence of path-like
    image_size : (height, width)
    color_mode : {"grayscale", "rgb", "rgba"}
    interpolation : str
        As :func:`~genaug.data.load_image`.
    directory : path-like, optional
        Store directory: the images are kept there as ``<key>.npy`` (memory-mapped) with
        ``<key>.json``, and a later call with the same files and format opens them without
        decoding. A changed, added or removed file changes the key, so stale pixels are never
        served. Written to a temporary file and renamed; a lock file makes a second process
        building the same store wait and then open it.
    workers : int, optional
        Decoding threads (Pillow releases the GIL while decoding); default: CPU count.
    decoder : StoreDecoder, optional
        Default: :func:`pillow_decoder` of ``image_size``, ``color_mode``, ``interpolation``
        and ``workers``.

    Raises
    ------
    OutputError
        The store directory cannot be written (e.g. the disk is full); nothing is left
        half-written.
    """
    paths = [os.fspath(p) for p in paths]
    image_size = (int(image_size[0]), int(image_size[1]))
    shape = (len(paths), *image_size, channels_of(color_mode))
    if decoder is None:
        decoder = pillow_decoder(image_size=image_size, color_mode=color_mode,
                                 interpolation=interpolation, workers=workers)
    if directory is None:
        images = np.empty(shape, dtype=decoder.dtype)
        return ImageStore(images, decoder.decode_into(images, paths))
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the image store directory {directory}: "
                          f"{error.strerror or error}") from None
    key = store_key(paths, image_size=image_size, color_mode=color_mode,
                    interpolation=interpolation, decoder=decoder.name, dtype=decoder.dtype)
    array_path, meta_path = directory / f"{key}.npy", directory / f"{key}.json"
    with open(directory / f"{key}.lock", "a") as lock:
        # Whoever holds the lock builds; the others wait, then find the finished store.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            found = _open_store(array_path, meta_path, shape, decoder.dtype)
            if found is not None:
                return found
            return _write_store(array_path, meta_path, shape, paths, color_mode,
                                interpolation, decoder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _open_store(array_path: Path, meta_path: Path, shape, dtype) -> ImageStore | None:
    """The finished store at these paths, or None (missing, another format or shape)."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != STORE_FORMAT or not array_path.exists():
        return None
    images = np.load(array_path, mmap_mode="r")
    if images.shape != shape or images.dtype != dtype:
        return None
    return ImageStore(images, {int(row): error for row, error in meta["errors"].items()},
                      array_path)


def _write_store(array_path, meta_path, shape, paths, color_mode, interpolation,
                 decoder) -> ImageStore:
    directory = array_path.parent
    temporary = []
    try:
        handle, array_temp = tempfile.mkstemp(dir=directory, suffix=".npy.tmp")
        os.close(handle)
        temporary.append(array_temp)
        images = np.lib.format.open_memmap(array_temp, mode="w+", dtype=decoder.dtype,
                                           shape=shape)
        errors = decoder.decode_into(images, paths)
        images.flush()
        del images
        handle, meta_temp = tempfile.mkstemp(dir=directory, suffix=".json.tmp")
        temporary.append(meta_temp)
        with os.fdopen(handle, "w") as meta_file:
            json.dump({"format": STORE_FORMAT, "shape": list(shape), "color_mode": color_mode,
                       "interpolation": interpolation, "decoder": decoder.name,
                       "dtype": decoder.dtype.str,
                       "errors": {str(row): error for row, error in errors.items()}},
                      meta_file)
        # The array first: a store counts as finished only once its metadata is in place.
        os.replace(array_temp, array_path)
        os.replace(meta_temp, meta_path)
    except OSError as error:
        for path in temporary:
            Path(path).unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(f"the disk of the image store {directory} is full: "
                              f"{decoded_bytes(shape[0], shape[1:3], color_mode, decoder.dtype):,}"
                              " bytes "
                              "needed; free space or pass cache='memory'") from None
        raise OutputError(f"cannot write the image store in {directory}: "
                          f"{error.strerror or error}") from None
    return ImageStore(np.load(array_path, mmap_mode="r"), errors, array_path)


def _decode_into(images, paths, image_size, color_mode, interpolation, workers) -> dict:
    """Decode every path into its row of ``images``; ``{row: error}`` of the broken ones."""
    errors: dict[int, str] = {}

    def decode(row: int) -> None:
        try:
            images[row] = load_image(paths[row], image_size=image_size,
                                     color_mode=color_mode, interpolation=interpolation)
        except Exception as error:  # PIL raises many types on corrupt data
            images[row] = 0
            errors[row] = f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        for _ in tqdm(pool.map(decode, range(len(paths))), total=len(paths),
                      desc="decoding images once", unit="img",
                      disable=len(paths) < PROGRESS_FROM):
            pass
    return dict(sorted(errors.items()))

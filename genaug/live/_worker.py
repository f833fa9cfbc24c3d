"""``GenerationWorker``: the live producer's unit of work, one batch of one class."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class GenerationWorker:
    """Generate a batch, normalise each image, gate it and persist the accepted ones.

    The same worker runs in a thread of the training process or in a child process
    (:class:`SubprocessWorker`); :class:`LiveSource` only schedules its batches.

    Parameters
    ----------
    backend : GeneratorBackend
    class_names : sequence of str
        The training classes; ``run`` takes a label into them.
    image_size : (height, width)
    color_mode : str
    gates : object with ``check(image, class_name) -> (passed, quality)``, optional
    cache_writer : CacheWriter, optional
        Where accepted images are persisted with full records; closed by :meth:`close`.
    """

    #: where the work runs, reported in the live statistics
    producer = "thread"

    def __init__(self, backend, *, class_names: Sequence[str], image_size, color_mode: str,
                 gates=None, cache_writer=None):
        self.backend = backend
        self.class_names = tuple(class_names)
        self.image_size = tuple(image_size)
        self.color_mode = color_mode
        self.gates = gates
        self.writer = cache_writer

    @property
    def batch_size(self) -> int:
        return int(getattr(self.backend, "batch_size", 8))

    def producible(self) -> list[bool]:
        """Per class, whether the backend can make it."""
        return [bool(self.backend.can_generate(name)) for name in self.class_names]

    def run(self, label: int, requests, should_stop: Callable[[], bool] = lambda: False
            ) -> tuple[list[np.ndarray], int]:
        """The accepted images of one batch of class ``label``, and how many were generated
        (``should_stop`` is checked between images, so a stop lands within one image)."""
        from genaug.generation import normalize_image

        name = self.class_names[label]
        accepted, generated = [], 0
        for made in self.backend.generate_batch(requests):
            if should_stop():
                break
            generated += 1
            image = normalize_image(made.image, self.image_size, self.color_mode)
            passed, quality = (True, {}) if self.gates is None else self.gates.check(image, name)
            if not passed:
                continue
            if self.writer is not None:
                seed = made.provenance.get("seed")
                self.writer.add(image, class_name=name, record_id=f"live-{name}-{seed}",
                                **{**made.provenance, "quality": quality, "attempts": 1})
            accepted.append(image)
        return accepted, generated

    def close(self) -> None:
        """Close the cache writer (whole files and records only) and the backend."""
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            close = getattr(self.backend, "close", None)
            if close is not None:
                close()

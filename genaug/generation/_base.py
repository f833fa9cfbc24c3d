"""The small generator-backend interface shared by ``genaug generate`` and live producers.

Backends subclass :class:`GeneratorBackend` here and are registered by kind in
:mod:`genaug.generation._backends`, which is the only module that imports them all."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from genaug.exceptions import ConfigError

#: The default noise level of a variation of a real image (``strength``; SDEdit, img2img).
DEFAULT_VARIATION_STRENGTH = 0.6


@dataclass
class GenerationRequest:
    """What to make: one image of ``class_name`` from ``seed``.

    Parameters
    ----------
    class_name : str
    seed : int
        Fixes the initial noise, so the same request gives the same image.
    prompt, negative_prompt : str, optional
        Used by prompt-driven backends (``sd``); a class-conditional backend ignores them.
    attributes : dict
        The plan's attribute values for this image (recorded in its provenance).
    source_image : ndarray, optional
        uint8 HxWxC real image to make a variation of (image-to-image).
    source_id : str, optional
        The id of ``source_image`` in the dataset, recorded as ``source_id``.
    """

    class_name: str
    seed: int
    prompt: str | None = None
    negative_prompt: str | None = None
    attributes: dict = field(default_factory=dict)
    source_image: np.ndarray | None = None
    source_id: str | None = None


@dataclass
class GeneratedImage:
    """A generated uint8 HxWxC image and its provenance (the cache record fields)."""

    image: np.ndarray
    provenance: dict
    class_name: str = ""


class GeneratorBackend(ABC):
    """A generator that turns :class:`GenerationRequest` objects into images.

    Subclasses implement :meth:`generate_batch`; every returned image carries a provenance
    dict with the record fields ``generator`` (``backend``, ``model``, ``model_hash``),
    ``prompt``, ``negative_prompt``, ``attributes``, ``seed``, ``steps``, ``guidance_scale``
    and ``source_id``. Backends are used from one thread at a time.
    """

    #: name written to ``generator.backend`` (and the backend's kind in ``load_backend``)
    backend_name: str = "base"
    #: the file that marks a directory this backend loads, and what such a directory is
    marker: ClassVar[str | None] = None
    marker_hint: ClassVar[str] = ""
    #: whether prompts change the output (then the prompt-set hash goes into every record)
    uses_prompts: bool = False
    #: whether requests may carry a ``source_image`` (variations of real images)
    supports_source_images: bool = False
    #: default batch size on the current device
    batch_size: int = 8
    #: Sample every batch at one shape, ``batch_size`` rows (padding the rest), so an image
    #: depends on its seed and the batch size only, not on the batch it was sampled in:
    #: kernels picked per shape round differently (a pixel of a rare image moves by one
    #: level). ``generate_cache`` turns it on for its run. The ``ddpm`` backend honours it;
    #: ``sd`` does not, so its images may differ in such rare pixels between runs that
    #: batch them differently.
    fixed_shape: bool = False

    device: str = "cpu"
    #: (height, width) and colour mode of the raw output
    native_size: tuple[int, int] | None = None
    native_color_mode: str = "rgb"

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """Classes this backend can make, or None when any class can be prompted."""
        return None

    def can_generate(self, class_name: str) -> bool:
        return self.class_names is None or class_name in self.class_names

    @abstractmethod
    def info(self) -> dict:
        """``{"backend", "model", "model_hash", ...}``: the ``generator`` record field."""

    @abstractmethod
    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[GeneratedImage]:
        """Generate one image per request, in order (batched on the device as it sees fit)."""

    def generate(
        self,
        class_name: str,
        n: int,
        *,
        seeds: Sequence[int],
        prompts: Sequence[str] | None = None,
        negative_prompt: str | None = None,
        source_images: Sequence[np.ndarray] | None = None,
        source_ids: Sequence[str] | None = None,
    ) -> list[GeneratedImage]:
        """Generate ``n`` images of one class, one per seed (convenience over requests)."""
        if len(seeds) != n:
            raise ConfigError(f"need one seed per image: {n} images, {len(seeds)} seeds")
        if source_images is not None and len(source_images) != n:
            raise ConfigError("need one source image per generated image")
        requests = [
            GenerationRequest(
                class_name=class_name,
                seed=int(seed),
                prompt=None if prompts is None else prompts[i % len(prompts)],
                negative_prompt=negative_prompt,
                source_image=None if source_images is None else source_images[i],
                source_id=None if source_ids is None else source_ids[i],
            )
            for i, seed in enumerate(seeds)
        ]
        return self.generate_batch(requests)

    def _init_sampling(self, *, device, precision: str, steps: int, strength: float) -> None:
        """Check and set what every diffusion backend shares: ``device``, ``dtype``,
        ``steps`` and ``strength`` (the noise level of variations of real images)."""
        from genaug.generation._utils import resolve_device, resolve_dtype

        if steps < 1:
            raise ConfigError(f"`steps` must be at least 1, got {steps}")
        if not 0.0 < strength <= 1.0:
            raise ConfigError(f"`strength` must be in (0, 1], got {strength}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(self.device, precision)
        self.steps = int(steps)
        self.strength = float(strength)

    def _batches(self, requests: Sequence[GenerationRequest]):
        """Yield ``(indices, variation)``: groups of at most ``batch_size`` requests,
        text-to-image first, then variations, which start from a partly noised real image
        and so run as batches of their own."""
        for variation in (False, True):
            chosen = [i for i, r in enumerate(requests)
                      if (r.source_image is not None) == variation]
            for start in range(0, len(chosen), self.batch_size):
                yield chosen[start:start + self.batch_size], variation

    def close(self) -> None:
        """Free device memory: subclasses drop their models, then call this."""
        try:
            import torch
        except ImportError:  # pragma: no cover
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

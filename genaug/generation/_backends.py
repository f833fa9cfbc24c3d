"""The backend registry: each kind of generator directory and the backend class that loads it.

Like diffusers' ``auto_pipeline`` mapping, this module is the one place that imports every
backend; the backends import only :mod:`genaug.generation._base`, so there is no cycle. A new
backend subclasses :class:`GeneratorBackend`, sets ``marker`` (the file that identifies its
directories) and is added to :data:`BACKENDS`.
"""

from __future__ import annotations

from pathlib import Path

from genaug.exceptions import ConfigError
from genaug.generation._base import GeneratorBackend
from genaug.generation._ddpm_backend import DDPMBackend
from genaug.generation._sd_backend import StableDiffusionBackend

#: kind -> backend class, in the order directories are recognised
BACKENDS: dict[str, type[GeneratorBackend]] = {
    "ddpm": DDPMBackend,
    "sd": StableDiffusionBackend,
}


def backend_kind(path) -> str:
    """The kind of generator in a local directory (a key of :data:`BACKENDS`): ``"ddpm"`` for
    a ``genaug fit-generator`` directory, ``"sd"`` for a diffusers Stable Diffusion
    checkpoint; raises :class:`ConfigError` otherwise."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"generator not found: {path} (a local directory is required; "
                          "nothing is downloaded)")
    if not path.is_dir():
        raise ConfigError(f"generator must be a directory: {path}")
    for kind, backend in BACKENDS.items():
        if (path / backend.marker).is_file():
            return kind
    raise ConfigError(f"{path} is neither "
                      + " nor ".join(b.marker_hint for b in BACKENDS.values()))


def load_backend(path, *, kind: str = "auto", device=None, precision: str = "auto",
                 **options) -> GeneratorBackend:
    """Load a generator backend from a local directory, offline.

    Parameters
    ----------
    path : path-like
        A ``genaug fit-generator`` directory (``ddpm``) or a diffusers Stable Diffusion
        checkpoint directory (``sd``).
    kind : {"auto", "ddpm", "sd"}
    device : str, optional
        ``"cuda"``, ``"cpu"`` or None/``"auto"`` (CUDA when available).
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``auto``: bf16 (fp16 without bf16 support) on CUDA, fp32 on CPU.
    **options
        Backend options: ``steps``, ``guidance_scale``, ``batch_size``, ``strength`` and, for
        ``ddpm``, ``sampler`` (``"dpm++"`` or ``"ddim"``), ``pixel_check``, ``cuda_graph``
        and ``compile`` (see :class:`DDPMBackend`); for ``sd``, ``lora`` (an adapter folder
        written by ``genaug fit-lora``).
    """
    detected = backend_kind(path)
    if kind not in ("auto", detected):
        raise ConfigError(f"{path} holds a {detected} generator, not {kind}")
    return BACKENDS[detected](path, device=device, precision=precision, **options)

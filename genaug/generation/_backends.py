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
#: elsewhere a generator can be loaded -> the backend class that loads it there (``"ray"``:
#: :class:`genaug.generation._ray.RayBackend`, registered by its module)
PLACEMENTS: dict[str, type[GeneratorBackend]] = {}


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
                 ray=None, ray_workers: int | None = None,
                 ray_gpus_per_worker: float | None = None,
                 ray_cpus_per_worker: float | None = None, **options) -> GeneratorBackend:
    """Load a generator backend from a local directory, offline (on this machine, or on the
    workers of a Ray cluster).

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
    ray : True or str, optional
        Load the generator on Ray workers instead, once per worker, and generate there
        (needs ``pip install 'genaug[ray]'``): ``True`` joins the Ray instance this machine
        runs or starts a local one, a string is the address of a cluster (``"auto"``,
        ``"host:6379"``). The directory must be at the same path on every node. Returns a
        :class:`~genaug.generation.RayBackend`; close it to stop the workers.
    ray_workers : int, optional
        Ray workers (default: as many as the cluster's resources hold).
    ray_gpus_per_worker : float, optional
        GPUs per worker (default: 1 when the cluster has GPUs, else 0).
    ray_cpus_per_worker : float, optional
        CPUs per worker (default 1; a CPU worker runs that many torch threads).
    """
    if ray is None or ray is False:
        given = [name for name, value in (("ray_workers", ray_workers),
                                          ("ray_gpus_per_worker", ray_gpus_per_worker),
                                          ("ray_cpus_per_worker", ray_cpus_per_worker))
                 if value is not None]
        if given:
            raise ConfigError(f"{', '.join(f'`{n}`' for n in given)} apply to generation on "
                              "Ray: give `ray` too")
    else:
        return PLACEMENTS["ray"](path, ray=ray, ray_workers=ray_workers,
                          ray_gpus_per_worker=ray_gpus_per_worker,
                          ray_cpus_per_worker=ray_cpus_per_worker, kind=kind, device=device,
                          precision=precision, **options)
    detected = backend_kind(path)
    if kind not in ("auto", detected):
        raise ConfigError(f"{path} holds a {detected} generator, not {kind}")
    return BACKENDS[detected](path, device=device, precision=precision, **options)

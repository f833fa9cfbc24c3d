"""Building the live source of a ``genaug train`` run."""

from __future__ import annotations

import functools
from pathlib import Path

from genaug.exceptions import ConfigError


def share_gpu_with_torch() -> None:
    """Let TensorFlow grow its GPU memory on demand instead of reserving almost all of it.

    TensorFlow's default takes nearly the whole card at start-up, leaving torch's generator
    nothing. Hiding the GPU from TensorFlow would also work but would train the classifier on
    the CPU, so genaug chooses memory growth. Must run before TensorFlow touches the GPU.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: too late to change, nothing to do
            pass


def build_worker(generator, *, device: str, class_names, image_size, color_mode: str,
                 reference_paths=None, cache_dir=None, backend_options=None, gates=None):
    """The standard live :class:`GenerationWorker`: a generator loaded offline, the standard
    gate chain against the real images of each class, and a cache writer.

    Every argument is picklable, so ``functools.partial(build_worker, ...)`` is the factory a
    :class:`SubprocessWorker` calls in its child.

    Parameters
    ----------
    generator : path-like
        A ``genaug fit-generator`` directory or a local Stable Diffusion checkpoint.
    device : str
    class_names : sequence of str
    image_size : (height, width)
    color_mode : str
    reference_paths : mapping of class name to image paths, optional
        The real training images of each class, for the near-duplicate gate.
    cache_dir : path-like, optional
        Where accepted images are persisted.
    backend_options : dict, optional
        Passed to :func:`genaug.generation.load_backend` (``steps``, ``guidance_scale``,
        ``lora``...).
    gates : GateSpec, optional
        The gate settings (default: ``GateSpec()``, the standard chain).
    """
    from genaug.cache import CacheWriter
    from genaug.generation import GateSpec, load_backend, real_image_loader
    from genaug.live._worker import GenerationWorker

    spec = GateSpec() if gates is None else gates
    if spec.uses_models:
        share_gpu_with_torch()  # the verifier's Keras may be TensorFlow, here in this process
    backend = load_backend(generator, device=device, **(backend_options or {}))
    reference_images = real_image_loader(reference_paths or {}, image_size=image_size,
                                         color_mode=color_mode)
    gates = spec.build(class_names=class_names, reference_images=reference_images)
    writer = CacheWriter(cache_dir) if cache_dir is not None else None
    return GenerationWorker(backend, class_names=class_names, image_size=image_size,
                            color_mode=color_mode, gates=gates, cache_writer=writer)


def check_live_generator(generator, *, lora=None) -> str:
    """The kind of ``generator`` (:func:`genaug.generation.backend_kind`), checked with its
    ``lora`` adapter, without loading torch: a run fails here before any output."""
    from genaug.generation import backend_kind, check_lora

    kind = backend_kind(generator)
    if lora:
        if kind != "sd":
            raise ConfigError("--live-lora adapts a Stable Diffusion checkpoint; "
                              f"--live-generator {generator} is a {kind} one")
        check_lora(lora, option="--live-lora")
    return kind


def start_live_source(generator, train, *, image_size, color_mode: str, cache_dir,
                      device: str = "cuda", producer: str = "auto", capacity: int = 256,
                      max_reuse: int = 4, gates=None, lora=None, seed: int = 0, log=print):
    """Start the live producer of a training run, or return None (with a message) when it
    cannot run.

    Parameters
    ----------
    generator : path-like
        A ``genaug fit-generator`` directory or a local Stable Diffusion checkpoint.
    train : DatasetIndex
        The training split: its classes, and its real images for the near-duplicate gate.
    image_size : (height, width)
    color_mode : str
    cache_dir : path-like
        Where accepted images persist, so the next run can reuse them as a plain cache.
    device : str, default "cuda"
        Without CUDA, ``"cuda"`` logs that no live images will be made and returns None: the
        run's synthetic slots use the synthetic cache, then real oversampling. ``"cpu"``
        runs the generator on the CPU (slow; for tests and small checks).
    producer : {"auto", "thread", "process"}
        Where generation, gates and cache writes run: ``"process"`` in a child process
        (they never hold the training process's GIL), ``"thread"`` in this process.
        ``"auto"`` is ``"thread"``: measured faster on an H200 (1.02x the cache-fed step
        against 1.60x for the child process, before jobs crossed as one array) and on the
        CPU (``benchmarks/live_step_time.py``; docs/performance.md).
    capacity, max_reuse : int
        Buffered images per class, and draws one fresh image may serve.
    gates : GateSpec, optional
        The gate settings (default: ``GateSpec()``, the standard chain), e.g. a reference
        classifier for the verification gate (``verify_model``, path-like so a child process
        can load it) or the feature-space selection of ``genaug generate
        --synthetic-select`` (``select_model``, ``select_method``), measured against the
        training split's real images.
    lora : path-like, optional
        A LoRA adapter written by ``genaug fit-lora`` for a Stable Diffusion ``generator``.
    seed : int
        First seed of the live stream.
    log : callable
        Receives the one-line messages.
    """
    check_live_generator(generator, lora=lora)
    import torch

    from genaug.live._process import SubprocessWorker
    from genaug.live._source import LiveSource

    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        log("live generator: CUDA is not available, so no live images this run; synthetic "
            "slots use the synthetic cache, then real oversampling (a CPU device runs the "
            "generator on the CPU)")
        return None
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"`device` must be cuda, cuda:N or cpu, got {device}")
    if producer == "auto":
        producer = "thread"
    if producer not in ("process", "thread"):
        raise ConfigError(f"`producer` must be auto, process or thread, got {producer}")
    share_gpu_with_torch()
    factory = functools.partial(
        build_worker, generator, device=device, class_names=train.class_names,
        image_size=tuple(image_size), color_mode=color_mode,
        reference_paths=train.paths_by_class(), cache_dir=Path(cache_dir),
        backend_options={"lora": str(lora)} if lora else None, gates=gates)
    worker = SubprocessWorker(factory) if producer == "process" else factory()
    source = LiveSource(worker, class_names=train.class_names, capacity=capacity,
                        max_reuse=max_reuse, seed=seed)
    log(f"live generator: {generator} on {device} (in a {producer}), "
        f"classes {', '.join(source.live_classes)}; accepted images persist to {cache_dir}")
    return source.start()

"""Building the live source of a ``genaug train`` run."""

from __future__ import annotations

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


def start_live_source(config, splits, *, log=print):
    """Start the producer of a run, or return None (with a message) when it cannot run.

    Without CUDA, ``--live-device cuda`` falls back to the synthetic cache (and real
    oversampling): the run goes on without live images. ``--live-device cpu`` runs the
    generator on the CPU (slow; meant for tests and small checks). Accepted images are
    persisted into ``--synthetic-cache`` (or ``<output-dir>/live_cache``) so the next run can
    reuse them as a plain cache.
    """
    import torch

    from genaug.generation import build_gate_chain, load_backend
    from genaug.live._source import LiveSource
    from genaug.synthetic import CacheWriter

    device = config.live_device
    if device.startswith("cuda") and not torch.cuda.is_available():
        log("live generator: CUDA is not available, so no live images this run; synthetic "
            "slots use the synthetic cache, then real oversampling (--live-device cpu runs "
            "the generator on the CPU)")
        return None
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ConfigError(f"--live-device must be cuda, cuda:N or cpu, got {device}")
    share_gpu_with_torch()
    backend = load_backend(config.live_generator, device=device)
    train = splits.train
    size = (config.image_size, config.image_size)

    def reference_images(class_name):
        from genaug.data import load_image

        label = train.class_names.index(class_name)
        return [load_image(p, image_size=size, color_mode=config.color_mode)
                for p, y in zip(train.paths, train.labels) if y == label]

    gates = build_gate_chain(class_names=train.class_names, reference_images=reference_images)
    cache_dir = Path(config.synthetic_cache or Path(config.output_dir) / "live_cache")
    source = LiveSource(backend, class_names=train.class_names, image_size=size,
                        color_mode=config.color_mode, gates=gates,
                        cache_writer=CacheWriter(cache_dir), capacity=config.live_buffer,
                        max_reuse=config.live_max_reuse, seed=config.seed)
    log(f"live generator: {config.live_generator} on {device}, classes "
        f"{', '.join(source.live_classes)}; accepted images persist to {cache_dir}")
    return source.start()

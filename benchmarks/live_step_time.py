"""Training step time of a fit fed by the live generator, against the same fit fed by a cache.

Every arm trains the same CNN on the same data, loader, plan and synthetic ratio; only where
the synthetic slots' pixels come from changes:

* ``cache``: a synthetic cache the same generator wrote beforehand (PNG decode per slot);
* ``live-process``: fresh images from a producer in a child process;
* ``live-thread``: fresh images from a producer thread in the training process (the CLI
  default, ``--live-producer auto``).

The live arms also get the cache, as ``genaug train --live-generator --synthetic-cache``
does, so a slot with nothing fresh falls back exactly as in training. The generator holds
random weights unless ``--generator`` names a trained one (the producer's cost does not
depend on the weights); its blur and structure gates run with thresholds that pass noise, so
fresh images really are served. Step time is the interval between the ends of consecutive
training batches (data loading included), first epoch of every fit left out; arms take
turns for ``--repeats`` rounds and each arm's median over all its steps is reported, with
the CPU time the training process itself used per step (a child producer's is not in it),
and the share of synthetic slots served fresh (the rest fell back to the cache).

    # GPU (needs no TensorFlow): base UNet, 25 DDIM steps, 32x32, ratio 0.25
    KERAS_BACKEND=torch python benchmarks/live_step_time.py --device cuda
    # CPU smoke run (producer and training share the same cores)
    python benchmarks/live_step_time.py --device cpu --model-size tiny --sampling-steps 2
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def step_times(fit, epochs: int) -> tuple[list[float], float]:
    """``fit(callbacks, epochs)`` timed per training batch, and the CPU seconds the training
    process (all its threads, not a child) used meanwhile; the first epoch is left out."""
    import keras

    times: list[float] = []
    cpu = {}

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.last, self.epoch = time.perf_counter(), epoch
            if epoch == 1:
                cpu["start"] = time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if self.epoch > 0:
                times.append(now - self.last)
            self.last = now

        def on_train_end(self, logs=None):
            cpu["end"] = time.process_time()

    fit([Clock()], epochs)
    return times, cpu["end"] - cpu["start"]


def fill_cache(args, index, cache: Path, factory) -> None:
    """Write ``--cache-per-class`` images of every class into the cache, in this process."""
    from genaug.generation import GenerationRequest

    worker = factory(cache_dir=str(cache))
    try:
        for label, name in enumerate(index.class_names):
            made = 0
            while made < args.cache_per_class:
                requests = [GenerationRequest(class_name=name, seed=10**6 + made + i)
                            for i in range(worker.batch_size)]
                images, generated = worker.run(label, requests)
                made += max(generated, 1)
    finally:
        worker.close()


def run_arm(args, arm: str, index, cache: Path, factory, epochs: int) -> dict:
    import keras

    from genaug import BalancedBatchGenerator
    from genaug.cache import SyntheticCache
    from genaug.live import LiveSource, SubprocessWorker
    from training.models import build_cnn

    live = None
    if arm != "cache":
        live_factory = functools.partial(factory, cache_dir=None)
        worker = (SubprocessWorker(live_factory) if arm == "live-process"
                  else live_factory())
        live = LiveSource(worker, class_names=index.class_names, seed=args.seed,
                          capacity=args.buffer, max_reuse=args.max_reuse)
    size = (args.image_size, args.image_size)
    loader = BalancedBatchGenerator(
        index, batch_size=args.batch_size, image_size=size, color_mode=args.color_mode,
        seed=args.seed, balance="oversample", epoch_size=args.epoch_size,
        synthetic_cache=SyntheticCache(cache, class_names=index.class_names),
        synthetic_ratio=args.synthetic_ratio, live_source=live, workers=args.workers)
    keras.utils.set_random_seed(args.seed)
    channels = 1 if args.color_mode == "grayscale" else 3
    model = build_cnn((*size, channels), len(index.class_names), width=args.model_width)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy")

    def fit(callbacks, epochs):
        model.fit(loader, epochs=epochs, verbose=0, callbacks=callbacks)

    if live is None:
        times, cpu = step_times(fit, epochs)
        return {"times": times, "cpu_s": cpu}
    with live:
        times, cpu = step_times(fit, epochs)
    stats = live.statistics()
    return {"times": times, "cpu_s": cpu, "consumed": stats["consumed"], "misses": stats["misses"],
            "fallbacks": stats["fallbacks"], "fresh_share": stats["fresh_share"],
            "produced_per_s": stats["produced_per_s"], "slots_per_s": stats["slots_per_s"],
            "consumer_wait_s": stats["consumer_wait_s"], "error": stats["producer_error"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="image folder (default: the embedded digits)")
    parser.add_argument("--generator", help="trained generator directory (default: random "
                        "weights)")
    parser.add_argument("--device", default="auto", help="generator device: auto, cpu, cuda")
    parser.add_argument("--model-size", choices=["tiny", "small", "base"],
                        help="random generator's UNet (default: base on CUDA, tiny on CPU)")
    parser.add_argument("--sampling-steps", type=int, default=25)
    parser.add_argument("--generator-batch", type=int, help="default: 256 on CUDA, 8 on CPU")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--color-mode", choices=["grayscale", "rgb"])
    parser.add_argument("--synthetic-ratio", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epoch-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3, help="per fit; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--arms", default="cache,live-process,live-thread")
    parser.add_argument("--model-width", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="PyDataset workers")
    parser.add_argument("--buffer", type=int, default=256)
    parser.add_argument("--max-reuse", type=int, default=4)
    parser.add_argument("--cache-per-class", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import keras
    import torch

    from genaug.data import DatasetIndex, digits_longtail
    from genaug.generation import GateSpec
    from genaug.generation._utils import resolve_device
    from genaug.live import build_worker

    args.device = resolve_device(args.device)
    cuda = args.device.startswith("cuda")
    data_dir = Path(args.data_dir) if args.data_dir else digits_longtail()[0]
    index = DatasetIndex.from_directory(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        generator = args.generator
        if generator is None:
            from generation_throughput import make_generator

            args.color_mode = args.color_mode or ("grayscale" if args.data_dir is None
                                                  else "rgb")
            generator = make_generator(
                Path(tmp) / "generator", model_size=args.model_size or
                ("base" if cuda else "tiny"), resolution=args.image_size,
                channels=1 if args.color_mode == "grayscale" else 3,
                class_names=index.class_names)
        args.color_mode = args.color_mode or "rgb"
        factory = functools.partial(
            build_worker, str(generator), device=args.device, class_names=index.class_names,
            image_size=(args.image_size, args.image_size), color_mode=args.color_mode,
            reference_paths=index.paths_by_class(),
            backend_options={"steps": args.sampling_steps, "pixel_check": False,
                             "batch_size": args.generator_batch or (256 if cuda else 8)},
            gates=GateSpec(blur_min=0.0, structure_min=-1.0))
        cache = Path(tmp) / "cache"
        fill_cache(args, index, cache, factory)
        arms = args.arms.split(",")
        results = {arm: {"times": [], "cpu_s": 0.0} for arm in arms}
        for _ in range(args.repeats):
            for arm in arms:
                measured = run_arm(args, arm, index, cache, factory, args.epochs)
                times = results[arm]["times"] + measured.pop("times")
                cpu = results[arm]["cpu_s"] + measured.pop("cpu_s")
                results[arm] = {**measured, "times": times, "cpu_s": cpu}
    device = torch.cuda.get_device_name() if cuda else "cpu"
    base = statistics.median(results[arms[0]]["times"])
    print(f"keras {keras.__version__} ({keras.backend.backend()}), generator on {device}, "
          f"{args.image_size}x{args.image_size} {args.color_mode}, batch {args.batch_size}, "
          f"synthetic ratio {args.synthetic_ratio}, {args.sampling_steps} sampling steps")
    summary = {}
    for arm in arms:
        times = results[arm].pop("times")
        cpu_ms = 1000 * results[arm].pop("cpu_s") / len(times)
        median = statistics.median(times)
        summary[arm] = {"steps": len(times), "median_step_ms": 1000 * median,
                        "mean_step_ms": 1000 * statistics.fmean(times),
                        f"vs_{arms[0]}": median / base,
                        "training_process_cpu_ms_per_step": cpu_ms, **results[arm]}
        extra = ""
        if "consumed" in results[arm]:
            share = results[arm]["fresh_share"]
            extra = (f" | last fit: synthetic slots served fresh "
                     f"{'-' if share is None else f'{share:.1%}'} ({results[arm]['consumed']} "
                     f"fresh, fallbacks {results[arm]['fallbacks']}), produced "
                     f"{results[arm]['produced_per_s']:.0f}/s, waited "
                     f"{results[arm]['consumer_wait_s']:.2f} s"
                     + (f", error {results[arm]['error']}" if results[arm]["error"] else ""))
        print(f"{arm:<13} median step {1000 * median:7.2f} ms ({median / base:.3f}x "
              f"{arms[0]}), mean {1000 * statistics.fmean(times):7.2f} ms over "
              f"{len(times)} steps, training-process CPU {cpu_ms:6.1f} ms/step{extra}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()

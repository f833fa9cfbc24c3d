"""Loader throughput: genaug's loaders against ``keras.utils.image_dataset_from_directory``.

Everything runs in one process on the same folder of PNGs, and the result is reported as
ratios against Keras's own (unbalanced) loader, so the figures mean something on any machine.
Every loader gets one warm-up epoch; then the loaders take turns, one full epoch each, for
``--repeats`` rounds (interleaving spreads any drift in machine load over all of them), and the
median images/s per loader is reported.

    python benchmarks/loader_throughput.py              # 10,000 64x64 PNGs, 3 repeats
    python benchmarks/loader_throughput.py --quick      # 2,000 PNGs, 1 repeat
    python benchmarks/loader_throughput.py --data-dir /tmp/bench-pngs   # keep/reuse the set

``--data-dir``: an empty or missing folder is filled with the generated set (and reused on the
next run); a folder that already holds class sub-folders is used as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

MARKER = ".genaug-benchmark.json"
BATCH = 32
SYNTHETIC_RATIO = 0.25


# --------------------------------------------------------------------------- data


def class_counts(total: int, classes: int, imbalance: float) -> list[int]:
    """Long-tailed (geometric) class sizes summing to ``total``; largest/smallest ~ imbalance."""
    shape = imbalance ** (-np.arange(classes) / max(classes - 1, 1))
    counts = np.maximum(np.floor(shape / shape.sum() * total).astype(int), 1)
    counts[0] += total - counts.sum()
    return counts.tolist()


def textured_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """An RGB image with smooth colour fields, stripes and sensor-like noise.

    Pure noise barely compresses and flat colour decodes trivially; this sits in between, so
    PNG decoding costs about what it costs on photographs of this size.
    """
    low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC),
                      dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.1, 0.6)
    stripes = 30.0 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)))
    noise = rng.normal(0.0, 10.0, (size, size, 3))
    return np.clip(base + stripes[..., None] + noise, 0, 255).astype(np.uint8)


def make_dataset(directory: Path, *, images: int, size: int, classes: int,
                 imbalance: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for k, count in enumerate(class_counts(images, classes, imbalance)):
        folder = directory / f"class_{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(textured_image(rng, size)).save(folder / f"{i:05d}.png")
    params = dict(images=images, size=size, classes=classes, imbalance=imbalance, seed=seed)
    (directory / MARKER).write_text(json.dumps(params) + "\n")


def prepare_dataset(args, scratch: Path) -> Path:
    """The folder to read: ``--data-dir`` as found, else a freshly generated set."""
    directory = Path(args.data_dir) if args.data_dir else scratch / "images"
    has_classes = directory.is_dir() and any(
        p.is_dir() and not p.name.startswith(".") for p in directory.iterdir())
    if has_classes:
        marker = directory / MARKER
        if marker.exists():
            made = json.loads(marker.read_text())
            wanted = dict(images=args.images, size=args.size, classes=args.classes,
                          imbalance=args.imbalance)
            if any(made.get(k) != v for k, v in wanted.items()):
                print(f"note: reusing {directory}, generated with {made}", flush=True)
        return directory
    print(f"generating {args.images} {args.size}x{args.size} PNGs in {directory} ...",
          end=" ", flush=True)
    start = time.perf_counter()
    make_dataset(directory, images=args.images, size=args.size, classes=args.classes,
                 imbalance=args.imbalance)
    print(f"{time.perf_counter() - start:.0f} s", flush=True)
    return directory


def make_synthetic_cache(directory: Path, class_names, counts, *, per_class: int,
                         epoch_size: int, size: int) -> list[str]:
    """``per_class`` synthetic images for every class below its balanced share of an epoch."""
    from genaug.synthetic import CacheWriter

    share = epoch_size / len(class_names)
    minority = [name for name, count in zip(class_names, counts) if count < share]
    rng = np.random.default_rng(12345)
    with CacheWriter(directory) as writer:
        for name in minority:
            for i in range(per_class):
                writer.add(textured_image(rng, size), class_name=name,
                           record_id=f"{name}-{i:05d}", generator={"backend": "bench"}, seed=i)
    return minority


# --------------------------------------------------------------------------- loaders


class Case:
    """One loader: ``epoch()`` runs one full epoch and returns the number of images seen."""

    def __init__(self, name: str, epoch, *, baseline_of: str | None = None):
        self.name = name
        self.epoch = epoch
        self.baseline_of = baseline_of  # the case this one is "mixing on" for
        self.rates: list[float] = []
        self.cpu: list[float] = []  # CPU seconds (all threads of this process) per image
        self.seen: set[int] = set()  # images per epoch, to check every loader did the same

    def timed_epoch(self) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        seen = self.epoch()
        self.seen.add(seen)
        self.cpu.append((time.process_time() - cpu) / seen)
        self.rates.append(seen / (time.perf_counter() - start))

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def tf_epoch(dataset):
    def run() -> int:
        seen = 0
        for batch in dataset:
            seen += int(batch[0].shape[0])
        return seen
    return run


def getitem_epoch(generator):
    """``g[i]`` for every batch in the main thread, then ``on_epoch_end`` as ``fit`` does."""
    def run() -> int:
        seen = 0
        for i in range(len(generator)):
            seen += len(generator[i][0])
        generator.on_epoch_end()
        return seen
    return run


def keras_adapter_epoch(generator):
    """Keras's own iteration of a PyDataset (its OrderedEnqueuer with ``workers`` threads),
    as ``model.fit`` drives it: ``on_epoch_begin``, the numpy iterator, ``on_epoch_end``."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(generator, shuffle=False)

    def run() -> int:
        adapter.on_epoch_begin()
        seen = 0
        for batch in adapter.get_numpy_iterator():
            seen += len(batch[0])
        adapter.on_epoch_end()
        return seen
    return run


def build_cases(data_dir: Path, cache_dir: Path, *, size: int, epoch_size: int,
                workers: int) -> list[Case]:
    import keras

    import genaug

    image_size = (size, size)
    common = dict(image_size=image_size, batch_size=BATCH, seed=0)
    mixing = dict(synthetic_cache=str(cache_dir), synthetic_ratio=SYNTHETIC_RATIO)
    gtf = genaug.image_dataset_from_directory

    def pydataset(**extra):
        return genaug.BalancedBatchGenerator(str(data_dir), epoch_size=epoch_size,
                                             workers=workers, **common, **extra)

    keras_name = "keras image_dataset_from_directory (unbalanced)"
    tf_over = "genaug tf.data, oversample"
    py_main = "genaug PyDataset, g[i] in main thread"
    py_keras = f"genaug PyDataset, Keras enqueuer ({workers} threads)"
    mix = f" + synthetic {SYNTHETIC_RATIO:g}"
    mixed = gtf(str(data_dir), balance="oversample", epoch_size=epoch_size, verbose=False,
                **common, **mixing)
    draws = mixed.sampler.summary()["synthetic_draws_this_epoch"]
    print(f"with mixing on, {draws} of the {epoch_size} images of an epoch are synthetic")
    return [
        Case(keras_name, tf_epoch(keras.utils.image_dataset_from_directory(
            str(data_dir), verbose=False, **common))),
        Case(tf_over, tf_epoch(gtf(str(data_dir), balance="oversample", epoch_size=epoch_size,
                                   verbose=False, **common))),
        Case("genaug tf.data, balanced_batches", tf_epoch(gtf(
            str(data_dir), balance="balanced_batches", epoch_size=epoch_size, verbose=False,
            **common))),
        Case(tf_over + mix, tf_epoch(mixed), baseline_of=tf_over),
        Case(py_main, getitem_epoch(pydataset())),
        Case(py_keras, keras_adapter_epoch(pydataset())),
        Case(py_main + mix, getitem_epoch(pydataset(**mixing)), baseline_of=py_main),
        Case(py_keras + mix, keras_adapter_epoch(pydataset(**mixing)), baseline_of=py_keras),
    ]


# --------------------------------------------------------------------------- report


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def header(command: str) -> list[str]:
    import keras
    import tensorflow as tf

    import genaug

    versions = [f"genaug {genaug.__version__}", f"python {platform.python_version()}",
                f"tensorflow {tf.__version__}", f"keras {keras.__version__}",
                f"numpy {np.__version__}", f"pillow {Image.__version__}"]
    return [f"command: {command}", "versions: " + ", ".join(versions),
            f"machine: {platform.machine()}, {cores()} CPU cores usable "
            f"(os.cpu_count()={os.cpu_count()}), {platform.system()} {platform.release()}"]


def table(cases: list[Case]) -> list[str]:
    """Markdown rows: throughput, its ratio to Keras (and mixing on / off), and CPU cost.

    CPU ms/image is the process's CPU time (all threads) per image; on a shared machine it
    moves far less than wall-clock throughput, so "CPU vs Keras" (Keras's CPU per image over
    the loader's, higher is better) is the steadier comparison there.
    """
    keras_rate = cases[0].median
    keras_cpu = statistics.median(cases[0].cpu)
    by_name = {c.name: c for c in cases}
    width = max(len(c.name) for c in cases)
    lines = [f"| {'loader':<{width}} | images/s | vs Keras | mixing on/off | CPU ms/image "
             "| CPU vs Keras |",
             f"|{'-' * (width + 2)}|---------:|---------:|--------------:|-------------:"
             "|-------------:|"]
    for case in cases:
        cpu = statistics.median(case.cpu)
        mix = (f"{case.median / by_name[case.baseline_of].median:.2f}x"
               if case.baseline_of else "")
        lines.append(f"| {case.name:<{width}} | {case.median:8.0f} | "
                     f"{case.median / keras_rate:7.2f}x | {mix:>13} | {1000 * cpu:12.3f} | "
                     f"{keras_cpu / cpu:11.2f}x |")
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=None,
                        help="images to generate (default 10000; 2000 with --quick)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed epochs per loader, median reported (3; 1 with --quick)")
    parser.add_argument("--data-dir", default=None,
                        help="folder to generate into and reuse (default: a temporary one)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--imbalance", type=float, default=20.0,
                        help="largest / smallest class size (20)")
    parser.add_argument("--synthetic-per-class", type=int, default=200,
                        help="synthetic images per minority class (200)")
    parser.add_argument("--workers", type=int, default=2, help="PyDataset worker threads (2)")
    parser.add_argument("--quick", action="store_true",
                        help="a fast check: 2000 images, 1 repeat")
    args = parser.parse_args(argv)
    if args.images is None:
        args.images = 2000 if args.quick else 10000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    for line in header(command):
        print(line, flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="genaug-bench-"))
    try:
        import genaug

        data_dir = prepare_dataset(args, scratch)
        index = genaug.DatasetIndex.load(data_dir, validate=False)
        counts = index.counts().tolist()
        epoch_size = len(index)
        cache_dir = scratch / "synthetic"
        minority = make_synthetic_cache(cache_dir, index.class_names, counts,
                                        per_class=args.synthetic_per_class,
                                        epoch_size=epoch_size, size=args.size)
        print(f"dataset: {epoch_size} files, {len(counts)} classes, sizes {counts} "
              f"(ratio {max(counts) / max(min(counts), 1):.1f})")
        print(f"synthetic cache: {args.synthetic_per_class} per minority class x "
              f"{len(minority)} classes; synthetic_ratio={SYNTHETIC_RATIO}")
        print(f"every epoch: {epoch_size} images, batch {BATCH}, image_size "
              f"({args.size}, {args.size}); 1 warm-up epoch, {args.repeats} timed epochs each, "
              f"load average {os.getloadavg()[0]:.2f} at start", flush=True)

        cases = build_cases(data_dir, cache_dir, size=args.size, epoch_size=epoch_size,
                            workers=args.workers)
        for case in cases:
            case.epoch()  # warm-up: graph tracing, thread pools, page cache
        for repeat in range(args.repeats):
            shift = repeat % len(cases)  # rotate the order so no loader always goes first
            for case in cases[shift:] + cases[:shift]:
                case.timed_epoch()
            print(f"  round {repeat + 1}/{args.repeats} done", flush=True)

        for case in cases:
            if case.seen != {epoch_size}:
                print(f"warning: {case.name} delivered {sorted(case.seen)} images per epoch, "
                      f"not {epoch_size}")
        print()
        for line in table(cases):
            print(line)
        spread = max((max(c.rates) - min(c.rates)) / c.median for c in cases)
        load = os.getloadavg()[0]
        print(f"\nlargest spread between repeats: {spread:.0%} of the median; "
              f"load average {load:.2f} at the end; total {time.perf_counter() - started:.0f} s")
        if load > cores():
            print("note: the machine was busy with other work (load average above the core "
                  "count); wall-clock ratios are noisy, CPU vs Keras is the steadier figure")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

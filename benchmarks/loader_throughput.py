"""Loader throughput and build time: genaug's loaders against Keras's, on three image shapes.

Everything runs in one process, and every figure is a ratio to
``keras.utils.image_dataset_from_directory`` measured in the same rounds, so the figures mean
something on a shared machine. Per shape (28x28 grayscale PNG; 64x64 RGB PNG; 256x256 RGB JPEG
resized to 224x224) every loader runs one warm-up epoch, then each round runs Keras, loader 1,
Keras, loader 2, ..., Keras (one full epoch each, as ``model.fit`` takes it), the order
rotating from round to round. A loader's "vs Keras" is the median over ``--rounds`` rounds of
its images/s divided by the mean of the two Keras epochs around it (its CPU per image
likewise), with the range over the rounds. These are warm epochs: the warm-up epoch built the
loaders' image stores (and filled Keras's ``.cache()``). Cold epochs (a new dataset, built and
read for one epoch, image store and ``.cache()`` included) are paired the same way against a
new Keras dataset's first epoch. Then, on a folder of 12,000 small PNGs, the datasets are
built in the same paired way and the median ratio of the build times is shown; with
``--disk-store N``, N 64x64 RGB PNGs are read through a store directory (memory-mapped), with
the process's resident memory and the store's size.

    python benchmarks/loader_throughput.py                # all three shapes and the build time
    python benchmarks/loader_throughput.py --quick        # small folders, 3 rounds
    python benchmarks/loader_throughput.py --data gray28=/path/to/fashion/train   # a real folder
    python benchmarks/loader_throughput.py --disk-store 50000 --shapes gray28   # + 50k on disk

``--data SHAPE=DIR``: read that folder (one sub-folder per class) for the shape instead of
generating one; ``--work-dir`` keeps the generated folders for the next run.
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
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

MARKER = ".genaug-benchmark.json"
SYNTHETIC_RATIO = 0.25


@dataclass(frozen=True)
class Shape:
    """One benchmarked case: files of ``side`` px in ``ext``, read at ``image_size``."""

    name: str
    side: int
    ext: str
    color_mode: str
    image_size: int
    images: int

    @property
    def title(self) -> str:
        kind = "grayscale" if self.color_mode == "grayscale" else "RGB"
        read = "" if self.image_size == self.side else f", resized to {self.image_size}"
        return f"{self.side}x{self.side} {kind} {self.ext.upper()}{read}"


SHAPES = {
    "gray28": Shape("gray28", 28, "png", "grayscale", 28, 5000),
    "rgb64": Shape("rgb64", 64, "png", "rgb", 64, 5000),
    "jpeg224": Shape("jpeg224", 256, "jpg", "rgb", 224, 1500),
}


# --------------------------------------------------------------------------- data


def class_counts(total: int, classes: int, imbalance: float) -> list[int]:
    """Long-tailed (geometric) class sizes summing to ``total``; largest/smallest ~ imbalance."""
    shape = imbalance ** (-np.arange(classes) / max(classes - 1, 1))
    counts = np.maximum(np.floor(shape / shape.sum() * total).astype(int), 1)
    counts[0] += total - counts.sum()
    return counts.tolist()


def textured_image(rng: np.random.Generator, size: int, *, gray: bool = False) -> np.ndarray:
    """An image with smooth colour fields, stripes and sensor-like noise.

    Pure noise barely compresses and flat colour decodes trivially; this sits in between, so
    decoding costs about what it costs on photographs of this size.
    """
    low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC),
                      dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.1, 0.6)
    stripes = 30.0 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)))
    noise = rng.normal(0.0, 10.0, (size, size, 3))
    image = np.clip(base + stripes[..., None] + noise, 0, 255).astype(np.uint8)
    return image.mean(axis=2).astype(np.uint8)[..., None] if gray else image


def make_folder(directory: Path, *, images: int, side: int, ext: str, gray: bool,
                classes: int, imbalance: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for k, count in enumerate(class_counts(images, classes, imbalance)):
        folder = directory / f"class_{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = textured_image(rng, side, gray=gray)
            image = Image.fromarray(pixels[..., 0] if gray else pixels)
            image.save(folder / f"{i:05d}.{ext}", **({"quality": 90} if ext == "jpg" else {}))
    params = dict(images=images, side=side, ext=ext, gray=gray, classes=classes,
                  imbalance=imbalance, seed=seed)
    (directory / MARKER).write_text(json.dumps(params) + "\n")


def folder_for(name: str, given: dict[str, str], work: Path, **params) -> Path:
    """``given[name]`` as it is, else a generated folder under ``work`` (reused when it was
    generated with the same parameters)."""
    if name in given:
        return Path(given[name])
    directory = work / name
    marker = directory / MARKER
    if marker.exists() and json.loads(marker.read_text()) == {**params, "seed": 0}:
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    print(f"generating {params['images']} {params['side']}px {params['ext'].upper()}s in "
          f"{directory} ...", end=" ", flush=True)
    start = time.perf_counter()
    make_folder(directory, **params)
    print(f"{time.perf_counter() - start:.0f} s", flush=True)
    return directory


def make_synthetic_cache(directory: Path, class_names, counts, *, per_class: int,
                         side: int, gray: bool) -> int:
    """``per_class`` synthetic images for every class below its balanced share."""
    from genaug.cache import CacheWriter

    share = sum(counts) / len(class_names)
    minority = [name for name, count in zip(class_names, counts) if count < share]
    rng = np.random.default_rng(12345)
    with CacheWriter(directory) as writer:
        for name in minority:
            for i in range(per_class):
                writer.add(textured_image(rng, side, gray=gray), class_name=name,
                           record_id=f"{name}-{i:05d}", generator={"backend": "bench"}, seed=i)
    return len(minority)


# --------------------------------------------------------------------------- loaders


class Case:
    """One loader: ``run()`` does one epoch (or one build) and returns the images it saw."""

    def __init__(self, name: str, run):
        self.name = name
        self.run = run
        self.rates: list[float] = []  # images (or builds) per second
        self.cpu: list[float] = []  # CPU seconds (all threads of this process) per image
        self.seen: set[int] = set()  # images per epoch, to check every loader did the same
        # Keras's figures paired with each of this loader's: the mean of the Keras epochs
        # (builds) run just before and just after it.
        self.keras_rates: list[float] = []
        self.keras_cpu: list[float] = []

    def timed(self) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        seen = self.run()
        self.seen.add(seen)
        self.cpu.append((time.process_time() - cpu) / seen)
        self.rates.append(seen / (time.perf_counter() - start))


def tf_epoch(dataset):
    """One epoch as ``model.fit`` takes it: a fresh iterator, then exactly the dataset's
    cardinality in batches (Keras does not ask for the end of the sequence)."""
    steps = int(dataset.cardinality())

    def run() -> int:
        seen = 0
        iterator = iter(dataset)
        for _ in range(steps):
            seen += int(next(iterator)[0].shape[0])
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
    """Keras's own iteration of a PyDataset (its OrderedEnqueuer when ``workers`` > 1),
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


def build_cases(data_dir: Path, cache_dir: Path, shape: Shape, *, batch: int,
                epoch_size: int, workers: int) -> list[Case]:


    common = dict(image_size=(shape.image_size, shape.image_size), batch_size=batch, seed=0,
                  color_mode=shape.color_mode)
    mixing = dict(synthetic_cache=str(cache_dir), synthetic_ratio=SYNTHETIC_RATIO)

    loaders = loader_makers(data_dir, common, epoch_size=epoch_size, workers=workers)
    tfdata, pydataset, keras_dataset = loaders["tfdata"], loaders["pydataset"], loaders["keras"]
    return [
        Case("Keras image_dataset_from_directory", tf_epoch(keras_dataset())),
        Case("Keras image_dataset_from_directory + .cache() (warm)",
             tf_epoch(keras_dataset().cache())),
        Case("genaug tf.data, oversample, cache=None (decoded every epoch)",
             tf_epoch(tfdata("oversample", cache=None))),
        Case("genaug tf.data, balance='none' (default cache='auto': image store)",
             tf_epoch(tfdata("none"))),
        Case("genaug tf.data, oversample", tf_epoch(tfdata("oversample"))),
        Case("genaug tf.data, balanced_batches", tf_epoch(tfdata("balanced_batches"))),
        Case(f"genaug tf.data, oversample + synthetic {SYNTHETIC_RATIO:g}",
             tf_epoch(tfdata("oversample", **mixing))),
        Case("genaug PyDataset, g[i], cache=None (decoded every epoch)",
             getitem_epoch(pydataset(cache=None))),
        Case("genaug PyDataset, g[i], default cache='auto' (image store)",
             getitem_epoch(pydataset())),
        Case("genaug PyDataset, Keras's adapter, default workers=1 (as model.fit)",
             keras_adapter_epoch(pydataset(workers=1))),
        Case(f"genaug PyDataset, Keras enqueuer ({workers} threads)",
             keras_adapter_epoch(pydataset())),
    ]


def loader_makers(data_dir: Path, common: dict, *, epoch_size: int, workers: int) -> dict:
    """Functions that make a new dataset of each kind over ``data_dir``."""
    import keras

    import genaug

    def tfdata(balance="oversample", **extra):
        return genaug.image_dataset_from_directory(
            str(data_dir), balance=balance, epoch_size=None if balance == "none" else epoch_size,
            verbose=False, **common, **extra)

    def pydataset(**extra):
        return genaug.BalancedBatchGenerator(str(data_dir), epoch_size=epoch_size,
                                             verbose=False, **{"workers": workers, **common,
                                                               **extra})

    def keras_dataset():
        return keras.utils.image_dataset_from_directory(str(data_dir), verbose=False, **common)

    return {"tfdata": tfdata, "pydataset": pydataset, "keras": keras_dataset}


def cold(make, epoch):
    """One cold epoch: a new dataset from ``make()`` (its image store or cache empty), built
    and read once by ``epoch`` (:func:`tf_epoch` or :func:`getitem_epoch`)."""
    def run() -> int:
        return epoch(make())()
    return run


def build_cold_cases(data_dir: Path, shape: Shape, *, batch: int, epoch_size: int,
                     workers: int) -> list[Case]:
    common = dict(image_size=(shape.image_size, shape.image_size), batch_size=batch, seed=0,
                  color_mode=shape.color_mode)
    loaders = loader_makers(data_dir, common, epoch_size=epoch_size, workers=workers)
    tfdata, pydataset, keras_dataset = loaders["tfdata"], loaders["pydataset"], loaders["keras"]
    return [
        Case("Keras image_dataset_from_directory, cold", cold(keras_dataset, tf_epoch)),
        Case("Keras + .cache(), cold (fills the cache)",
             cold(lambda: keras_dataset().cache(), tf_epoch)),
        Case("genaug tf.data, oversample, default cache, cold (builds the store)",
             cold(tfdata, tf_epoch)),
        Case("genaug PyDataset, g[i], default cache, cold (builds the store)",
             cold(pydataset, getitem_epoch)),
        Case("genaug PyDataset, Keras's adapter, workers=1, default cache, cold",
             cold(lambda: pydataset(workers=1), keras_adapter_epoch)),
    ]


def run_paired(keras: Case, others: list[Case], rounds: int) -> None:
    """Each round: Keras, loader 1, Keras, loader 2, ..., Keras, in an order that rotates
    from round to round. Each loader's epoch is paired with the mean of the Keras epochs just
    before and after it, so drift in the machine's load cancels out of the ratio."""
    keras.run()  # warm-up: graph tracing, thread pools, page cache
    for case in others:
        case.run()
    for r in range(rounds):
        shift = r % len(others)
        keras.timed()
        for case in others[shift:] + others[:shift]:
            case.timed()
            keras.timed()
            case.keras_rates.append(statistics.mean(keras.rates[-2:]))
            case.keras_cpu.append(statistics.mean(keras.cpu[-2:]))
    keras.keras_rates, keras.keras_cpu = keras.rates, keras.cpu


def paired(values: list[float], baseline: list[float], *, higher_is_better: bool = True):
    """Median and range of the paired ratios ``values[r] / baseline[r]`` (inverted when
    lower is better, so above 1 is always better for genaug)."""
    ratios = [(v / b if higher_is_better else b / v) for v, b in zip(values, baseline)]
    return statistics.median(ratios), min(ratios), max(ratios)


def throughput_table(cases: list[Case]) -> list[str]:
    width = max(len(c.name) for c in cases)
    lines = [f"| {'loader':<{width}} | images/s | vs Keras (range) | CPU ms/image "
             "| CPU vs Keras |",
             f"|{'-' * (width + 2)}|---------:|-----------------:|-------------:|-------------:|"]
    for case in cases:
        wall, low, high = paired(case.rates, case.keras_rates)
        cpu = paired(case.cpu, case.keras_cpu, higher_is_better=False)[0]
        lines.append(f"| {case.name:<{width}} | {statistics.median(case.rates):8.0f} | "
                     f"{wall:4.2f}x ({low:.2f}-{high:.2f}) | "
                     f"{1000 * statistics.median(case.cpu):12.3f} | {cpu:11.2f}x |")
    return lines


def measure_shape(shape: Shape, data_dir: Path, scratch: Path, args) -> list[str]:
    import genaug

    index = genaug.DatasetIndex.load(data_dir, validate=False)
    counts = index.counts().tolist()
    epoch_size = len(index)
    cache_dir = scratch / f"synthetic-{shape.name}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    side = index.sizes[0][0] if index.sizes else shape.side
    classes = make_synthetic_cache(cache_dir, index.class_names, counts,
                                   per_class=args.synthetic_per_class, side=side,
                                   gray=shape.color_mode == "grayscale")
    cases = build_cases(data_dir, cache_dir, shape, batch=args.batch, epoch_size=epoch_size,
                        workers=args.workers)
    run_paired(cases[0], cases[1:], args.rounds)
    cold_cases = build_cold_cases(data_dir, shape, batch=args.batch, epoch_size=epoch_size,
                                  workers=args.workers)
    run_paired(cold_cases[0], cold_cases[1:], args.rounds)
    lines = [f"### {shape.title}", "",
             f"{data_dir}: {epoch_size} files, {len(counts)} classes, sizes {counts}; "
             f"{args.synthetic_per_class} synthetic images for each of {classes} minority "
             f"classes; batch {args.batch}, {epoch_size} images per epoch, 1 warm-up epoch "
             f"and {args.rounds} paired rounds", ""]
    for case in cases + cold_cases:
        if case.seen != {epoch_size}:
            lines.append(f"warning: {case.name} delivered {sorted(case.seen)} images per "
                         f"epoch, not {epoch_size}")
    return (lines + ["Warm epochs:", ""] + throughput_table(cases)
            + ["", "Cold epochs (a new dataset: build, image store or cache, first epoch):", ""]
            + throughput_table(cold_cases) + [""])


def resident_bytes() -> int:
    """This process's resident memory (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure_disk_store(data_dir: Path, store_dir: Path, args) -> list[str]:
    """A large folder read through a store directory: the cold epoch builds the memory-mapped
    store, warm epochs (new datasets, as a later run or another ``compare`` arm makes them)
    open it; each paired with Keras's uncached epoch."""
    common = dict(image_size=(64, 64), batch_size=args.batch, seed=0, color_mode="rgb")
    files = sum(1 for _ in data_dir.rglob("*.png"))
    loaders = loader_makers(data_dir, common, epoch_size=files, workers=args.workers)
    keras_case = Case("Keras image_dataset_from_directory", tf_epoch(loaders["keras"]()))
    memory = {}

    def through_store(name, make, epoch):
        def run() -> int:
            before = resident_bytes()
            seen = epoch(make(cache=store_dir / name))()
            memory[name] = max(memory.get(name, 0), resident_bytes() - before)
            return seen
        return run

    tfdata, pydataset = loaders["tfdata"], loaders["pydataset"]
    cases = [
        Case("genaug tf.data, cache=DIR, cold (builds the store)",
             through_store("tfdata", tfdata, tf_epoch)),
        Case("genaug tf.data, cache=DIR, warm (opens it)", through_store("tfdata", tfdata,
                                                                         tf_epoch)),
        Case("genaug PyDataset, g[i], cache=DIR, cold (builds the store)",
             through_store("pydataset", pydataset, getitem_epoch)),
        Case("genaug PyDataset, g[i], cache=DIR, warm (opens it)",
             through_store("pydataset", pydataset, getitem_epoch)),
    ]
    keras_case.run()  # warm-up: page cache and graph tracing
    for case in cases:  # once, in order: the cold case builds what the warm one opens
        keras_case.timed()
        case.timed()
        keras_case.timed()
        case.keras_rates.append(statistics.mean(keras_case.rates[-2:]))
        case.keras_cpu.append(statistics.mean(keras_case.cpu[-2:]))
    keras_case.keras_rates, keras_case.keras_cpu = keras_case.rates, keras_case.cpu
    sizes = {name: sum(p.stat().st_size for p in (store_dir / name).glob("*.npy"))
             for name in ("tfdata", "pydataset")}
    lines = [f"### {files:,} 64x64 RGB PNGs through a store directory", "",
             f"{data_dir}; store directory {store_dir}; batch {args.batch}; one epoch each",
             ""] + throughput_table([keras_case] + cases) + [""]
    for name in ("tfdata", "pydataset"):
        lines.append(f"- {name}: store {sizes[name] / 2**20:,.0f} MiB on disk; resident memory "
                     f"grew by at most {memory.get(name, 0) / 2**20:,.0f} MiB over an epoch "
                     "(memory-mapped pages the kernel may drop)")
    return lines + [""]


def measure_build(data_dir: Path, args) -> list[str]:
    """Build Keras's dataset, genaug's tf.data dataset and the PyDataset in turns."""
    import keras

    import genaug

    common = dict(image_size=(28, 28), color_mode="grayscale", batch_size=args.batch, seed=0)
    builders = {
        "Keras image_dataset_from_directory": lambda: keras.utils.image_dataset_from_directory(
            str(data_dir), verbose=False, **common),
        "genaug tf.data, oversample": lambda: genaug.image_dataset_from_directory(
            str(data_dir), verbose=False, **common),
        "genaug PyDataset": lambda: genaug.BalancedBatchGenerator(str(data_dir),
                                                                  verbose=False, **common),
    }

    def timer(build):
        def run() -> int:
            build()
            return 1
        return run

    cases = [Case(name, timer(build)) for name, build in builders.items()]
    run_paired(cases[0], cases[1:], args.build_rounds)
    files = sum(1 for _ in data_dir.rglob("*.png"))
    lines = ["### Building the dataset", "",
             f"{data_dir}: {files} 28x28 grayscale PNGs; {args.build_rounds} paired rounds",
             "", "| loader | seconds | time vs Keras (range) |", "|---|--:|--:|"]
    for case in cases:
        ratio, low, high = paired(case.keras_rates, case.rates)
        lines.append(f"| {case.name} | {1 / statistics.median(case.rates):.3f} | "
                     f"{ratio:.2f}x ({low:.2f}-{high:.2f}) |")
    return lines + [""]


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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES),
                        help=f"comma-separated, of {', '.join(SHAPES)} (all)")
    parser.add_argument("--data", action="append", default=[], metavar="SHAPE=DIR",
                        help="read DIR for SHAPE (or build12k) instead of generating a folder")
    parser.add_argument("--work-dir", default=None,
                        help="keep generated folders here and reuse them (default: temporary)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed epochs per loader and shape (7; 3 with --quick)")
    parser.add_argument("--build-rounds", type=int, default=None,
                        help="timed builds per loader (9; 3 with --quick)")
    parser.add_argument("--build-files", type=int, default=None,
                        help="PNGs of the build-time folder (12000; 2000 with --quick)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (32, Keras's)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--imbalance", type=float, default=20.0,
                        help="largest / smallest class size of generated folders (20)")
    parser.add_argument("--synthetic-per-class", type=int, default=100,
                        help="synthetic images per minority class (100)")
    parser.add_argument("--workers", type=int, default=2, help="PyDataset worker threads (2)")
    parser.add_argument("--disk-store", type=int, default=0, metavar="N",
                        help="also read N 64x64 RGB PNGs through a store directory (0: skip)")
    parser.add_argument("--quick", action="store_true",
                        help="a fast check: a fifth of the images, 3 rounds")
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = sorted(set(args.shapes) - set(SHAPES))
    if unknown:
        parser.error(f"unknown shapes: {', '.join(unknown)}")
    try:
        args.data = dict(item.split("=", 1) for item in args.data)
    except ValueError:
        parser.error("--data takes SHAPE=DIR")
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.build_rounds = args.build_rounds or (3 if args.quick else 9)
    args.build_files = args.build_files or (2000 if args.quick else 12000)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    for line in header(command):
        print(line, flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="genaug-bench-"))
    work = Path(args.work_dir) if args.work_dir else scratch
    print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    try:
        for name in args.shapes:
            shape = SHAPES[name]
            images = shape.images // 5 if args.quick else shape.images
            data_dir = folder_for(name, args.data, work, images=images, side=shape.side,
                                  ext=shape.ext, gray=shape.color_mode == "grayscale",
                                  classes=args.classes, imbalance=args.imbalance)
            lines = measure_shape(shape, data_dir, scratch, args)
            print("\n".join(lines), flush=True)
        build_dir = folder_for("build12k", args.data, work, images=args.build_files, side=28,
                               ext="png", gray=True, classes=args.classes,
                               imbalance=args.imbalance)
        lines = measure_build(build_dir, args)
        print("\n".join(lines), flush=True)
        if args.disk_store:
            disk_dir = folder_for(f"rgb64-{args.disk_store}", args.data, work,
                                  images=args.disk_store, side=64, ext="png", gray=False,
                                  classes=args.classes, imbalance=args.imbalance)
            lines = measure_disk_store(disk_dir, scratch / "stores", args)
            print("\n".join(lines), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end; "
          f"total {time.perf_counter() - started:.0f} s")
    if os.getloadavg()[0] > cores():
        print("note: the machine was busy with other work (load average above the core "
              "count): read the per-round ranges, not single epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

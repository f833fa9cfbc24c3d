"""One training run, as ``genaug train`` and ``genaug compare`` perform it."""

from __future__ import annotations

import platform
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from genaug.cache import SyntheticCache, composition_status
from genaug.data import (
    DatasetIndex,
    DatasetSplits,
    channels_of,
    digits_longtail,
    split_dataset,
)
from genaug.exceptions import (
    ConfigError,
    ConvergenceWarning,
    DatasetError,
    DoubleCorrectionWarning,
)
from genaug.io import write_json
from genaug.sampling import SYNTHETIC, RampSchedule, SyntheticRecipe

#: The metadata of a ``TrainConfig`` field that only means something with synthetic images:
#: ``genaug compare`` resets it for arms without a cache.
SYNTHETIC_ONLY = {"synthetic_only": True}


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a training run; ``dataclasses.replace`` derives variants.

    ``color_mode="auto"`` is resolved from the data when the run starts
    (:func:`genaug.data.infer_color_mode`); :func:`build_loaders` takes a resolved mode.
    ``synthetic`` is the run's :class:`~genaug.sampling.SyntheticRecipe` (its schedule is
    resolved against ``epochs``). Fields marked :data:`SYNTHETIC_ONLY` only mean something
    with synthetic images.
    """

    data_dir: str | None = None
    test_dir: str | None = None
    val_split: float = 0.1
    test_split: float = 0.2
    classes: tuple[str, ...] | None = None
    balanced: bool = False
    class_weights: bool = False
    balanced_batches: bool = False
    epochs: int = 10
    batch_size: int = 32
    image_size: int = 32
    color_mode: str = "auto"
    seed: int = 0
    epoch_size: int | str | None = None
    output_dir: str = "outputs"
    model_dir: str = "models"
    model_name: str = "genaug_cnn"
    loader: str = "auto"
    cache: str | None = "auto"
    learning_rate: float = 1e-3
    model_width: int = 32
    augment: tuple[str, ...] | None = None
    augment_backend: str = "keras"
    synthetic_cache: str | None = None
    synthetic: SyntheticRecipe = field(default_factory=SyntheticRecipe, metadata=SYNTHETIC_ONLY)
    live_generator: str | None = field(default=None, metadata=SYNTHETIC_ONLY)
    live_lora: str | None = field(default=None, metadata=SYNTHETIC_ONLY)
    live_device: str = "cuda"
    live_buffer: int = 256
    live_max_reuse: int = 4
    live_producer: str = "auto"
    live_verify_model: str | None = field(default=None, metadata=SYNTHETIC_ONLY)
    live_verify_threshold: float = 0.6
    synthetic_select: str | None = field(default=None, metadata=SYNTHETIC_ONLY)
    select_model: str | None = field(default=None, metadata=SYNTHETIC_ONLY)
    synthetic_allocation: str | None = field(default=None, metadata=SYNTHETIC_ONLY)
    verbose: int = 1

    def sampling_options(self, *, train_size: int, class_weight=None,
                         sample_weights: bool | None = None, schedule=None,
                         synthetic_ids=None, synthetic_cap=None):
        """The run's :class:`~genaug.loaders.SamplingOptions` for its training loader.

        ``--balanced`` draws ``train_size`` slots per epoch unless ``--epoch-size`` says
        otherwise, so a balanced epoch costs what a plain one does. ``synthetic_cap``: per-class
        caps replacing ``--synthetic-cap`` (a confusion-directed allocation's).
        """
        from genaug.loaders import SamplingOptions

        balance = "none"
        if self.balanced or self.balanced_batches:
            balance = "balanced_batches" if self.balanced_batches else "oversample"
        epoch_size = self.epoch_size
        if balance != "none" and epoch_size is None:
            epoch_size = train_size
        recipe = self.synthetic if synthetic_cap is None else replace(self.synthetic,
                                                                      cap=synthetic_cap)
        return SamplingOptions(
            balance=balance, batch_size=self.batch_size, epoch_size=epoch_size, seed=self.seed,
            class_weight=class_weight, sample_weights=sample_weights, synthetic=recipe,
            schedule=schedule, synthetic_ids=synthetic_ids)


def _log(config: TrainConfig, message: str) -> None:
    if config.verbose:
        print(message, flush=True)


def check_output_dirs(*dirs) -> None:
    """Fail before training, not after, when an output folder cannot be written."""
    for directory in dirs:
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".genaug-write-test"):
                pass
        except OSError as error:
            raise ConfigError(f"cannot write to {directory}: {error.strerror or error}") from None


def resolve_splits(config: TrainConfig) -> DatasetSplits:
    """Index the data and split off validation and test sets (:func:`genaug.data.split_dataset`:
    a manifest's split column, else stratified and seeded)."""
    data_dir, test_dir = config.data_dir, config.test_dir
    if data_dir is None:
        data_dir, default_test = digits_longtail()
        test_dir = test_dir or default_test
    index = DatasetIndex.load(data_dir, class_names=config.classes)
    if len(index) == 0:
        raise DatasetError(f"no readable images in {data_dir}")
    test_index = None
    if test_dir is not None:
        test_index = DatasetIndex.load(test_dir, class_names=index.class_names)
    splits = split_dataset(index, validation_split=config.val_split or None,
                           test_split=config.test_split, test_index=test_index, seed=config.seed)
    if test_index is not None:
        splits = replace(splits, test_source=f"--test-dir {test_dir}")
    if splits.test is None or len(splits.test) == 0:
        raise DatasetError("the test set is empty")
    return splits


def _use_tf_loader(config: TrainConfig) -> bool:
    import keras

    if config.loader == "pydataset" or config.live_generator:
        return False
    available = keras.backend.backend() == "tensorflow"
    if config.loader == "tfdata" and not available:
        raise ConfigError("--loader tfdata needs the TensorFlow Keras backend")
    return available


def build_loaders(config: TrainConfig, splits: DatasetSplits, *, synthetic=None, schedule=None,
                  class_weight=None, sample_weights=False, live_source=None,
                  synthetic_ids=None, synthetic_cap=None):
    """Training, validation and test loaders, each from :func:`genaug.loaders.build_sampler`.

    ``synthetic_ids``: the synthetic images the training loader may draw (a selection);
    ``synthetic_cap``: per-class caps replacing ``--synthetic-cap`` (an allocation).
    """
    from genaug.loaders import BalancedBatchGenerator, build_augmentation, build_sampler

    options = config.sampling_options(train_size=len(splits.train), class_weight=class_weight,
                                      sample_weights=sample_weights, schedule=schedule,
                                      synthetic_ids=synthetic_ids, synthetic_cap=synthetic_cap)
    train_sampler = build_sampler(
        splits.train, options, synthetic_cache=synthetic, held_out_ids=splits.held_out_ids(),
        live_classes=live_source.live_classes if live_source is not None else ())
    plain = options.evaluation(shuffle=False)
    samplers = [train_sampler] + [build_sampler(part, plain) if part is not None else None
                                  for part in (splits.validation, splits.test)]
    augment = None
    if config.augment:
        augment = build_augmentation(config.augment, backend=config.augment_backend,
                                     seed=config.seed)
    decoding = dict(image_size=(config.image_size, config.image_size),
                    color_mode=config.color_mode)
    if _use_tf_loader(config):
        from genaug.loaders import make_tf_dataset

        def loader(sampler, augment=None):
            return make_tf_dataset(sampler, augment=augment, cache=config.cache, **decoding)
    else:
        def loader(sampler, augment=None):
            return BalancedBatchGenerator.from_sampler(
                sampler, augment=augment, cache=config.cache,
                live_source=live_source if sampler is train_sampler else None, **decoding)
    train, validation, test = (loader(sampler, augment if sampler is train_sampler else None)
                               if sampler is not None else None for sampler in samplers)
    return train, train_sampler, validation, test


def composition(sampler, epochs: int, train_counts) -> dict:
    """Per class and epoch: unique real, repeated real and synthetic draws, and totals."""
    names = sampler.class_names
    per_epoch, used = [], {name: set() for name in names}
    for epoch in range(epochs):
        mixed = sampler.mixed(epoch)
        per_epoch.append(mixed.composition(names))
        for c, name in enumerate(names):
            chosen = (mixed.labels == c) & (mixed.source == SYNTHETIC)
            used[name].update(mixed.index[chosen].tolist())
    classes = {}
    for c, name in enumerate(names):
        rows = [epoch_counts[name] for epoch_counts in per_epoch]
        classes[name] = {
            "real_images": int(train_counts[c]),
            "draws_per_epoch": int(sampler.plan.targets[c]),
            "oversampled_draws_per_epoch": max(int(sampler.plan.targets[c] - train_counts[c]), 0),
            "real_draws": sum(r["real"] for r in rows),
            "duplicated_draws": sum(r["duplicated"] for r in rows),
            "synthetic_draws": sum(r["synthetic"] for r in rows),
            "synthetic_images_used": len(used[name]),
        }
    return {"classes": classes, "per_epoch": per_epoch,
            "synthetic_only_classes": list(sampler.synthetic_only)}


def synthetic_shares(comp: dict) -> dict:
    """Per class, the two synthetic shares of a run, named by what each cap bounds.

    ``synthetic_share_of_draws``: the largest share, over the epochs, of the class's draws
    that were synthetic images; ``synthetic_cap`` bounds it in every epoch.
    ``synthetic_share_of_images``: the distinct synthetic images the class trained on over the
    whole run, as a share of its training images (real + those synthetic);
    ``synthetic_pool_cap`` bounds it. A cap of 0.6 on draws lets a long run reach far more
    than 60 % of distinct images, since each epoch may draw other synthetic images.
    """
    shares = {}
    for name, row in comp["classes"].items():
        per_epoch = [(epoch[name]["synthetic"],
                      epoch[name]["real"] + epoch[name]["duplicated"] + epoch[name]["synthetic"])
                     for epoch in comp["per_epoch"]]
        images = row["real_images"] + row["synthetic_images_used"]
        shares[name] = {
            "synthetic_share_of_draws": max((s / t for s, t in per_epoch if t), default=0.0),
            "synthetic_share_of_images": row["synthetic_images_used"] / images if images else 0.0,
        }
    return shares


def status_report(config, splits: DatasetSplits, comp: dict, cache, synthetic_source) -> dict:
    """``status.json``: what went into training, per class and split, with provenance.

    The composition fields are :func:`genaug.cache.composition_status`'s; ``synthetic``
    counts the distinct synthetic images a class trained on over the run. See
    :func:`synthetic_shares` for the two shares and which cap bounds each.
    """
    names = splits.class_names
    status = composition_status(
        splits, [comp["classes"][name]["synthetic_images_used"] for name in names], cache=cache,
        excluded_leakage=synthetic_source.excluded_leakage if synthetic_source else 0)
    for name, shares in synthetic_shares(comp).items():
        status["per_class"][name]["synthetic_share_of_draws"] = shares["synthetic_share_of_draws"]
    status.update(
        synthetic_cap=config.synthetic.cap,
        synthetic_pool_cap=config.synthetic.pool_cap,
        synthetic_only_classes=comp["synthetic_only_classes"],
        image_size=[config.image_size, config.image_size],
        color_mode=config.color_mode,
        seed=config.seed,
    )
    return status


def versions() -> dict:
    import keras
    import sklearn

    out = {"python": platform.python_version(), "numpy": np.__version__,
           "keras": keras.__version__, "keras_backend": keras.backend.backend(),
           "scikit-learn": sklearn.__version__}
    for name in ("tensorflow", "torch"):
        if name in sys.modules:
            out[name] = sys.modules[name].__version__
    from genaug import __version__

    out["genaug"] = __version__
    return out


def run_training(config: TrainConfig) -> dict:
    """Train, evaluate on the held-out real test set, write the outputs; return the metrics.

    Writes ``<output_dir>/metrics.json``, ``confusion_matrix.png``, ``status.json`` and
    ``<model_dir>/<model_name>.keras`` (with its ``.json`` input contract). See
    :class:`TrainingRun` for the steps.
    """
    return TrainingRun(config).run()


#: Real training images (at most) the batch-norm statistics are recomputed from at the end of
#: training, and before each validation (that pass runs every epoch, so it uses fewer).
RECALIBRATION_IMAGES = 1024
VALIDATION_RECALIBRATION_IMAGES = 256


class TrainingRun:
    """One training run; :meth:`run` performs the numbered steps in order.

    Each step reads what the previous ones left on the object. ``config`` is the run's
    :class:`TrainConfig` with ``color_mode="auto"`` resolved from the data.
    """

    def __init__(self, config: TrainConfig):
        self.config = config
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()
        self.splits: DatasetSplits | None = None
        self.skipped: list[dict] = []
        self.cache = self.synthetic = self.schedule = self.live = None
        self.fit_class_weight = self.sampler_class_weight = None
        self.sample_weights = False
        self.synthetic_ids: frozenset[str] | None = None  # the selection's kept images
        self.selection: dict | None = None
        self.allocation: dict | None = None  # --synthetic-allocation's per-class caps

    def run(self) -> dict:
        # 1. Check the options, split the real data (bad input fails before any output) and
        #    resolve the colour mode.
        self.split()
        # 2. Open the synthetic cache, leaving out images derived from held-out images.
        self.open_synthetic()
        #    With --select-model, keep the cache's images near their class in feature space.
        if self.config.select_model and not self.config.live_generator:
            from genaug.classifier import load_feature_extractor

            self.select_synthetic(load_feature_extractor(self.config.select_model))
        # 3. Choose where class weights go (the loss or the loader's sample weights) and how
        #    the synthetic ratio ramps up.
        self.choose_class_weights()
        self.schedule = self.ramp_schedule()
        # 4. Start the live generator; it is stopped whatever happens next.
        self.start_live()
        try:
            # 5. Build the training, validation and test loaders.
            train, sampler, validation, test = build_loaders(
                self.config, self.splits, synthetic=self.synthetic, schedule=self.schedule,
                class_weight=self.sampler_class_weight, sample_weights=self.sample_weights,
                live_source=self.live, synthetic_ids=self.synthetic_ids)
            # 6. Train, recomputing batch-norm statistics before each validation (a selection
            #    or allocation by the run's own model happens after its warm-up epochs: a new
            #    sampler).
            model, history, sampler = self.fit(train, sampler, validation)
            # 7. Evaluate on the held-out real test set, judge convergence, save the model.
            metrics = self.evaluate(model, test, history)
        finally:
            if self.live is not None:
                self.live.close()
        # 8. Account for what was trained on; write metrics, status and the confusion matrix.
        return self.write_outputs(metrics, sampler)

    def split(self) -> None:
        _check_config(self.config)
        self.splits = resolve_splits(self.config)
        if self.config.synthetic_allocation and self.splits.validation is None:
            raise ConfigError("--synthetic-allocation confusion measures the model on the "
                              "validation split: give --val-split above 0 (or validation rows "
                              "in the manifest)")
        if self.config.color_mode == "auto":
            from genaug.data import infer_color_mode

            self.config = replace(self.config, color_mode=infer_color_mode(self.splits.index))
        check_output_dirs(self.config.output_dir, self.config.model_dir)
        self.timings["index_s"] = time.perf_counter() - self.started
        splits = self.splits
        self.log(f"{len(splits.train)} training, "
                 f"{len(splits.validation) if splits.validation else 0} validation and "
                 f"{len(splits.test)} test images ({self.config.color_mode}); "
                 f"test set: {splits.test_source}")
        # A split made from the index carries the index's skipped list: dedupe by path.
        self.skipped = [{"path": path, "reason": reason} for path, reason in
                        {f.path: f.reason for f in (*splits.index.skipped,
                                                    *splits.test.skipped)}.items()]
        for item in self.skipped:
            self.log(f"skipped {item['path']}: {item['reason']}")

    def open_synthetic(self) -> None:
        config, names = self.config, self.splits.class_names
        if config.synthetic_cache:
            from genaug.sources import CacheSource

            if config.live_generator:  # the live producer writes there: it may not exist yet
                Path(config.synthetic_cache).mkdir(parents=True, exist_ok=True)
            self.cache = SyntheticCache(config.synthetic_cache, class_names=names)
            for line in self.cache.problems.lines():
                self.log(f"synthetic cache: {line}")
            self.synthetic = CacheSource(self.cache, class_names=names,
                                         exclude_source_ids=self.splits.held_out_ids())
            if self.synthetic.excluded_leakage:
                self.log(f"synthetic cache: {self.synthetic.excluded_leakage} image(s) derived "
                         "from validation/test images excluded from training")
        train_counts = self.splits.train.counts()
        synthetic_counts = (self.synthetic.counts() if self.synthetic is not None
                            else np.zeros(len(names)))
        empty = [n for n, c, s in zip(names, train_counts, synthetic_counts) if c == 0 and s == 0]
        if empty and self.balanced:
            raise DatasetError(f"class(es) with no training image: {', '.join(empty)}; add "
                               "images, a synthetic cache covering them, or leave them out of "
                               "--classes")

    @property
    def balanced(self) -> bool:
        return self.config.balanced or self.config.balanced_batches

    def choose_class_weights(self) -> None:
        self.sample_weights = self.synthetic is not None and self.config.synthetic.weight != 1.0
        if not self.config.class_weights:
            return
        if self.balanced:
            warnings.warn("--balanced with --class-weights corrects the imbalance twice; the "
                          "weights are computed from the distribution the loader delivers",
                          DoubleCorrectionWarning, stacklevel=2)
            self.sampler_class_weight, self.sample_weights = "balanced", True
            return
        from genaug.sampling import compute_class_weights

        weights = compute_class_weights(self.splits.train.labels, self.splits.class_names)
        if self.sample_weights:
            self.sampler_class_weight = weights
        else:
            self.fit_class_weight = weights

    def ramp_schedule(self) -> RampSchedule | None:
        if self.synthetic is None:
            return None
        return self.config.synthetic.schedule(epochs=self.config.epochs)

    def start_live(self) -> None:
        if self.config.live_generator:
            from genaug.generation import GateSpec
            from genaug.live import start_live_source

            config = self.config
            gates = GateSpec(
                verify_model=config.live_verify_model or None,
                verify_threshold=config.live_verify_threshold,
                select_model=(config.select_model or None) if config.synthetic_select else None,
                select_method=config.synthetic_select or "feature-distance")
            self.live = start_live_source(
                config.live_generator, self.splits.train,
                image_size=(config.image_size, config.image_size), color_mode=config.color_mode,
                cache_dir=config.synthetic_cache or Path(config.output_dir) / "live_cache",
                device=config.live_device, producer=config.live_producer,
                capacity=config.live_buffer, max_reuse=config.live_max_reuse, gates=gates,
                lora=config.live_lora,
                seed=config.seed, log=self.log)

    @property
    def selects_after_warmup(self) -> bool:
        return bool(self.config.synthetic_select) and not self.config.select_model

    @property
    def adapts_after_warmup(self) -> bool:
        """Whether the synthetic recipe changes after the warm-up, by the run's own model."""
        return self.selects_after_warmup or bool(self.config.synthetic_allocation)

    def select_synthetic(self, extractor, *, after_epoch: int | None = None) -> None:
        """Embed the real **training** images and the cache's usable images with
        ``extractor`` and keep the synthetic images in the bands
        :func:`genaug.sampling.select_by_feature_distance` keeps (validation and test images
        never take part; images derived from them are already out of ``self.synthetic``)."""
        from genaug.sampling import select_by_class_margin, select_by_feature_distance
        from genaug.sources import RealSource

        started = time.perf_counter()
        real = RealSource(self.splits.train)
        size, mode = extractor.image_size, extractor.color_mode
        margin = self.config.synthetic_select == "class-margin"
        select = select_by_class_margin if margin else select_by_feature_distance
        result = select(
            extractor(load_all(real, image_size=size, color_mode=mode)), real.labels,
            extractor(load_all(self.synthetic, image_size=size, color_mode=mode)),
            self.synthetic.labels, class_names=self.splits.class_names)
        self.synthetic_ids = frozenset(np.asarray(self.synthetic.ids, dtype=object)[result.keep])
        seconds = time.perf_counter() - started
        self.timings["select_s"] = seconds
        self.selection = {**result.to_dict(), "features": extractor.describe(),
                          "after_epoch": after_epoch, "seconds": round(seconds, 2)}
        self.log(f"synthetic selection ({self.config.synthetic_select}, {extractor.source}): "
                 f"kept {result.kept} of {len(result.keep)} cached images in {seconds:.1f}s")
        for name, row in result.per_class.items():
            if margin and row["kept"] + row["dropped"]:
                nearer = ", ".join(f"{other} {n}" for other, n in row["nearer_to"].items())
                self.log(f"  {name}: kept {row['kept']}, dropped {row['dropped']}"
                         + (f" (nearer to {nearer})" if nearer else ""))
            elif row["kept"] + row["dropped"]:
                self.log(f"  {name}: in {row['in']}, near {row['near']}, far {row['far']}; "
                         f"kept {row['kept']}" + (f" ({row['note']})" if row["note"] else ""))

    def adapt_after_warmup(self, model, sampler, validation):
        """After the warm-up, with the run's own model: select the cache (its ``features``
        layer), allocate per-class caps by its validation confusion, or both; then the
        training loader and sampler that draw accordingly."""
        from genaug.classifier import FeatureExtractor, embedding_model

        config = self.config
        if self.selects_after_warmup:
            embedding, layer = embedding_model(model)
            self.select_synthetic(FeatureExtractor(
                model=embedding, image_size=(config.image_size, config.image_size),
                color_mode=config.color_mode, layer=layer,
                source=f"this run's model after {config.synthetic.warmup_epochs} warm-up epoch(s)"),
                after_epoch=config.synthetic.warmup_epochs)
        caps = self.allocate_by_confusion(model, sampler, validation) \
            if config.synthetic_allocation else None
        train, sampler, _, _ = build_loaders(
            config, self.splits, synthetic=self.synthetic, schedule=self.schedule,
            class_weight=self.sampler_class_weight, sample_weights=self.sample_weights,
            synthetic_ids=self.synthetic_ids, synthetic_cap=caps)
        return train, sampler

    def allocate_by_confusion(self, model, sampler, validation) -> dict:
        """Per-class synthetic caps from the model's confusion on the validation split
        (:func:`genaug.sampling.allocate_by_confusion`), among the classes ``sampler``
        gives synthetic images."""
        from sklearn.metrics import confusion_matrix

        from genaug.sampling import allocate_by_confusion

        config, names = self.config, self.splits.class_names
        predicted = np.argmax(model.predict(validation, verbose=0), axis=1)
        confusion = confusion_matrix(self.splits.validation.labels, predicted,
                                     labels=np.arange(len(names)))
        allocation = allocate_by_confusion(confusion, class_names=names,
                                           cap=config.synthetic.cap, eligible=sampler.eligible)
        warmup = config.synthetic.warmup_epochs
        self.allocation = {**allocation.to_dict(), "after_epoch": warmup}
        self.log(f"synthetic allocation (validation confusion after {warmup} warm-up "
                 f"epoch(s)):")
        for name, row in self.allocation["per_class"].items():
            if row["receives_synthetic"]:
                self.log(f"  {name}: recall {row['recall']:.2f} on {row['validation_images']}"
                         f" images, cap {row['synthetic_cap']:.2f}")
        return allocation.as_cap()

    def recalibration_batches(self) -> list:
        """Batches of real training images, balanced as the run balances them, without
        augmentation or synthetic images, for :class:`training.models.BatchNormRecalibration`.
        """
        from genaug.loaders import BalancedBatchGenerator

        config = self.config
        balance, epoch_size = "none", None
        if self.balanced:  # a balanced epoch as long as a plain one, as build_loaders makes it
            balance = "balanced_batches" if config.balanced_batches else "oversample"
            epoch_size = len(self.splits.train)
        with warnings.catch_warnings():  # synthetic-only classes just add no real images here
            warnings.filterwarnings("ignore", message="classes with no training image")
            loader = BalancedBatchGenerator(
                self.splits.train, balance=balance, epoch_size=epoch_size,
                batch_size=config.batch_size, image_size=(config.image_size, config.image_size),
                color_mode=config.color_mode, seed=config.seed)
        count = min(len(loader), max(1, RECALIBRATION_IMAGES // config.batch_size))
        batches = [loader[i][0] for i in range(count)]
        if len(batches) > 1 and len(batches[-1]) < len(batches[0]):
            batches.pop()  # one batch shape: the compiled forward pass is traced once
        return batches

    def fit(self, train, sampler, validation):
        import keras

        from training.models import BatchNormRecalibration, build_cnn

        config = self.config
        keras.utils.set_random_seed(config.seed)
        channels = channels_of(config.color_mode)
        model = build_cnn((config.image_size, config.image_size, channels),
                          len(self.splits.class_names), width=config.model_width,
                          seed=config.seed)
        steps = max(len(sampler) * config.epochs, 1)
        optimizer = keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps))
        # Synthetic label smoothing makes the loaders yield one-hot rows (sampler.targets).
        loss = ("categorical_crossentropy" if sampler.categorical
                else "sparse_categorical_crossentropy")
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        callbacks = [BatchNormRecalibration(
            self.recalibration_batches(),
            validation_batches=max(1, VALIDATION_RECALIBRATION_IMAGES // config.batch_size))]
        started = time.perf_counter()
        progress = (1 if sys.stdout.isatty() else 2) if config.verbose else 0

        def fit_epochs(train, sampler, first: int, last: int) -> dict:
            ramp = [self.schedule.callback(sampler)] if self.schedule is not None else []
            # The loaders shuffle deterministically themselves.
            return model.fit(train, validation_data=validation, initial_epoch=first,
                             epochs=last, class_weight=self.fit_class_weight,
                             callbacks=callbacks + ramp, shuffle=False,
                             verbose=progress).history

        if self.adapts_after_warmup:  # same model and optimizer state on both sides
            history = fit_epochs(train, sampler, 0, config.synthetic.warmup_epochs)
            train, sampler = self.adapt_after_warmup(model, sampler, validation)
            later = fit_epochs(train, sampler, config.synthetic.warmup_epochs, config.epochs)
            history = {key: history.get(key, []) + values for key, values in later.items()}
        else:
            history = fit_epochs(train, sampler, 0, config.epochs)
        self.timings["train_s"] = time.perf_counter() - started
        return model, history, sampler

    def evaluate(self, model, test, history: dict) -> dict:
        from genaug.classifier import save_classifier
        from genaug.evidence import convergence
        from training.evaluate import classification_metrics

        config, names = self.config, self.splits.class_names
        started = time.perf_counter()
        y_pred = np.argmax(model.predict(test, verbose=0), axis=1)
        self.timings["evaluate_s"] = time.perf_counter() - started
        metrics = classification_metrics(self.splits.test.labels, y_pred, names)
        metrics["history"] = {k: [float(v) for v in values]
                              for k, values in history.items()}
        metrics["convergence"] = convergence(metrics["history"])
        if metrics["convergence"]["converged"] is False:
            warnings.warn(f"the run may not have converged ({metrics['convergence']['reason']})"
                          ": its scores understate what this recipe reaches; train longer "
                          "(--epochs) before comparing it", ConvergenceWarning, stacklevel=2)
        model_path = Path(config.model_dir) / f"{config.model_name}.keras"
        save_classifier(model, model_path, class_names=names,
                        image_size=(config.image_size, config.image_size),
                        color_mode=config.color_mode)
        metrics["model_path"] = str(model_path)
        return metrics

    def write_outputs(self, metrics: dict, sampler) -> dict:
        config, names = self.config, self.splits.class_names
        train_counts = self.splits.train.counts()
        comp = composition(sampler, config.epochs, train_counts)
        applied = self.fit_class_weight if self.fit_class_weight is not None else (
            dict(enumerate(sampler.class_weight.tolist())) if sampler.class_weight is not None
            else None)
        metrics.update(
            class_weights=None if applied is None else {names[int(k)]: float(v)
                                                        for k, v in applied.items()},
            composition=comp,
            synthetic_shares={"synthetic_cap": config.synthetic.cap,
                              "synthetic_pool_cap": config.synthetic.pool_cap,
                              "per_class": synthetic_shares(comp)},
            sampling=sampler.summary(),
            synthetic_schedule=self.schedule.to_dict() if self.schedule is not None else None,
            train_counts=dict(zip(names, train_counts.tolist())),
            test_set=self.splits.test_source,
            skipped_files=self.skipped,
            config=asdict(config),
            versions=versions(),
        )
        if self.synthetic is not None:
            metrics["synthetic"] = {"cache": str(config.synthetic_cache),
                                    "usable_images": len(self.synthetic),
                                    "excluded_for_leakage": self.synthetic.excluded_leakage,
                                    "problems": self.cache.problems.to_dict()}
        if self.live is not None:
            metrics["live"] = self.live.statistics()
        if self.selection is not None:
            metrics["synthetic_selection"] = self.selection
        if self.allocation is not None:
            metrics["synthetic_allocation"] = self.allocation
        self.timings["total_s"] = time.perf_counter() - self.started
        metrics["timings"] = self.timings
        out = Path(config.output_dir)
        status = status_report(config, self.splits, comp, self.cache, self.synthetic)
        status["skipped_files"] = self.skipped
        if self.live is not None:
            # What the live producer's gates turned away, per class (a class-margin gate
            # says here which classes' images strayed toward others).
            status["live_rejections"] = {key: metrics["live"][key] for key in (
                "generated", "accepted", "rejected_by_gate", "rejected_by_class")}
        if self.selection is not None:
            status["synthetic_selection"] = self.selection
        if self.allocation is not None:
            status["synthetic_allocation"] = self.allocation
        status["synthetic_schedule"] = metrics["synthetic_schedule"]
        status["synthetic_fill"] = {"fill_to": sampler.fill_to,
                                    "per_class": sampler.fill_summary()}
        status["synthetic_label_smoothing"] = config.synthetic.label_smoothing
        if self.synthetic is not None:
            # Which classes the synthetic images reached: a gain on one class can cost others.
            received = {name: row.get("synthetic", 0) > 0
                        for name, row in status["per_class"].items()}
            coverage = {"received": sorted(n for n, r in received.items() if r),
                        "not_received": sorted(n for n, r in received.items() if not r)}
            status["synthetic_coverage"] = metrics["synthetic_coverage"] = coverage
            self.log(f"synthetic images reached {', '.join(coverage['received']) or 'no class'}"
                     f"; none for {', '.join(coverage['not_received']) or 'no class'}")
        write_json(out / "status.json", status)
        write_json(out / "metrics.json", metrics)
        from training.evaluate import plot_confusion_matrix

        plot_confusion_matrix(metrics["confusion_matrix"], names, out / "confusion_matrix.png",
                              title=f"{config.model_name}: balanced accuracy "
                                    f"{metrics['balanced_accuracy']:.3f}")
        if config.verbose:
            print(per_class_table(metrics))
        return metrics

    def log(self, message: str) -> None:
        _log(self.config, message)


def load_all(source, *, image_size, color_mode: str) -> np.ndarray:
    """Every image of ``source`` as one uint8 stack ``(N, H, W, C)`` (for embedding)."""
    if len(source) == 0:
        channels = channels_of(color_mode)
        return np.zeros((0, *image_size, channels), dtype=np.uint8)
    return np.stack([source.load(i, image_size=image_size, color_mode=color_mode)
                     for i in range(len(source))])


def per_class_table(metrics: dict) -> str:
    """The per-class table printed at the end of a run."""
    names = metrics["class_names"]
    width = max(12, *(len(n) for n in names))
    counts = metrics.get("train_counts", {})
    lines = [f"{'class':<{width}} {'train':>6} {'support':>7} {'precision':>9} {'recall':>7} "
             f"{'f1':>6}"]
    for name in names:
        row = metrics["per_class"][name]
        lines.append(f"{name:<{width}} {counts.get(name, 0):>6} {row['support']:>7} "
                     f"{row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f}")
    lines.append(f"accuracy {metrics['accuracy']:.3f}  balanced accuracy "
                 f"{metrics['balanced_accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
                 f"kappa {metrics['cohen_kappa']:.3f}")
    return "\n".join(lines)


def _check_config(config: TrainConfig) -> None:
    if config.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {config.epochs}")
    if config.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {config.batch_size}")
    if not 8 <= config.image_size <= 1024:
        raise ConfigError(f"--image-size must be between 8 and 1024, got {config.image_size}")
    if config.color_mode not in ("auto", "grayscale", "rgb"):
        raise ConfigError(f"--color-mode must be auto, grayscale or rgb, got {config.color_mode}")
    if not 0.0 <= config.val_split < 1.0 or not 0.0 < config.test_split < 1.0:
        raise ConfigError("--val-split must be in [0, 1) and the test split in (0, 1)")
    if config.loader not in ("auto", "tfdata", "pydataset"):
        raise ConfigError(f"--loader must be auto, tfdata or pydataset, got {config.loader}")
    config.synthetic.schedule(epochs=config.epochs)  # a cool-down that leaves no epoch
    uses_synthetic = config.synthetic.needing_source()
    if uses_synthetic and not (config.synthetic_cache or config.live_generator):
        raise ConfigError("synthetic options need --synthetic-cache or --live-generator")
    if config.live_verify_model and not config.live_generator:
        raise ConfigError("--live-verify-model needs --live-generator")
    if config.live_generator:  # fail before any folder is created, not in the producer
        from genaug.generation import backend_kind, check_lora

        kind = backend_kind(config.live_generator)
        if config.live_lora:
            if kind != "sd":
                raise ConfigError("--live-lora adapts a Stable Diffusion checkpoint; "
                                  f"--live-generator {config.live_generator} is a {kind} one")
            check_lora(config.live_lora, option="--live-lora")
    elif config.live_lora:
        raise ConfigError("--live-lora needs --live-generator (a Stable Diffusion checkpoint)")
    if config.live_verify_model and not Path(config.live_verify_model).is_file():
        raise ConfigError(f"model not found: {config.live_verify_model}")
    _check_selection(config)
    _check_allocation(config)


def _check_allocation(config: TrainConfig) -> None:
    """``--synthetic-allocation``: fail before any output."""
    if config.synthetic_allocation is None:
        return
    if config.synthetic_allocation != "confusion":
        raise ConfigError(f"--synthetic-allocation must be confusion, got "
                          f"{config.synthetic_allocation}")
    if not config.synthetic_cache or config.live_generator:
        raise ConfigError("--synthetic-allocation needs --synthetic-cache (a live generator's "
                          "caps are fixed when it starts)")
    if not 1 <= config.synthetic.warmup_epochs < config.epochs:
        raise ConfigError("--synthetic-allocation confusion allocates by the run's own model "
                          "after its warm-up: give --warmup-epochs between 1 and --epochs - 1")


def _check_selection(config: TrainConfig) -> None:
    """``--synthetic-select`` and ``--select-model``: fail before any output."""
    if config.synthetic_select is None:
        if config.select_model:
            raise ConfigError("--select-model needs --synthetic-select feature-distance")
        return
    if config.synthetic_select not in ("feature-distance", "class-margin"):
        raise ConfigError(f"--synthetic-select must be feature-distance or class-margin, got "
                          f"{config.synthetic_select}")
    if config.live_generator:
        if not config.select_model:  # the run's own model is not trained when they are made
            raise ConfigError("--synthetic-select with --live-generator gates the live images "
                              "in the producer: give --select-model")
    elif not config.synthetic_cache:
        raise ConfigError("--synthetic-select needs --synthetic-cache or --live-generator")
    if config.select_model:
        if not Path(config.select_model).is_file():
            raise ConfigError(f"model not found: {config.select_model}")
    elif not 1 <= config.synthetic.warmup_epochs < config.epochs:
        raise ConfigError("--synthetic-select without --select-model selects with the run's "
                          "own model after its warm-up: give --warmup-epochs between 1 and "
                          "--epochs - 1")

"""One training run, as ``genaug train`` and ``genaug compare`` perform it."""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from genaug.cache import STATUS_FILE, SyntheticCache
from genaug.data import DatasetSplits, channels_of, load_splits
from genaug.exceptions import (
    ConfigError,
    ConvergenceWarning,
    DatasetError,
    DoubleCorrectionWarning,
)
from genaug.generation import DEFAULT_VERIFY_THRESHOLD
from genaug.io import check_writable, package_versions, write_json
from genaug.sampling import RampSchedule, SyntheticRecipe

#: The metadata of a ``TrainConfig`` field that only means something with synthetic images:
#: ``genaug compare`` resets it for arms without a cache.
SYNTHETIC_ONLY = {"synthetic_only": True}


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a training run; ``dataclasses.replace`` derives variants.

    ``color_mode="auto"`` is resolved from the data when the run starts
    (:func:`genaug.data.infer_color_mode`); :meth:`loaders` takes a resolved mode.
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
    live_verify_threshold: float = DEFAULT_VERIFY_THRESHOLD
    synthetic_select: str | None = field(default=None, metadata=SYNTHETIC_ONLY)
    select_model: str | None = field(default=None, metadata=SYNTHETIC_ONLY)
    synthetic_allocation: str | None = field(default=None, metadata=SYNTHETIC_ONLY)
    verbose: int = 1

    @property
    def balance(self) -> str:
        """The loaders' ``balance``: ``--balanced-batches`` before ``--balanced``."""
        if self.balanced_batches:
            return "balanced_batches"
        return "oversample" if self.balanced else "none"

    @property
    def selects_after_warmup(self) -> bool:
        """Whether the run's own model selects the synthetic images after its warm-up."""
        return bool(self.synthetic_select and not self.select_model)

    def splits(self) -> DatasetSplits:
        """The run's real images, split (:func:`genaug.data.load_splits`)."""
        return load_splits(self.data_dir, test_dir=self.test_dir, class_names=self.classes,
                           validation_split=self.val_split, test_split=self.test_split,
                           seed=self.seed)

    def sampling_options(self, *, train_size: int, class_weight=None,
                         sample_weights: bool | None = None, schedule=None,
                         synthetic_ids=None):
        """The run's :class:`~genaug.loaders.SamplingOptions` for its training loader.

        ``--balanced`` draws ``train_size`` slots per epoch unless ``--epoch-size`` says
        otherwise, so a balanced epoch costs what a plain one does (an allocation's per-class
        caps reach the loader after the warm-up: :class:`genaug.loaders.AdaptAfterWarmup`).
        """
        from genaug.loaders import SamplingOptions

        epoch_size = self.epoch_size
        if self.balance != "none" and epoch_size is None:
            epoch_size = train_size
        return SamplingOptions(
            balance=self.balance, batch_size=self.batch_size, epoch_size=epoch_size, seed=self.seed,
            class_weight=class_weight, sample_weights=sample_weights, synthetic=self.synthetic,
            schedule=schedule, synthetic_ids=synthetic_ids)

    def loader_kind(self) -> str:
        """``"tfdata"`` or ``"pydataset"`` (:func:`genaug.loaders.choose_loader`)."""
        from genaug.loaders import choose_loader

        return choose_loader(self.loader, live=bool(self.live_generator),
                             redraws_pool=self.selects_after_warmup
                             and self.synthetic.pool_cap is not None)

    def loaders(self, splits: DatasetSplits, *, synthetic_cache=None, schedule=None,
                class_weight=None, sample_weights=False, live_source=None, synthetic_ids=None):
        """The run's training, validation and test loaders
        (:func:`genaug.loaders.build_loaders`); ``synthetic_ids``: the synthetic images the
        training loader may draw (a selection)."""
        from genaug.loaders import build_augmentation, build_loaders

        options = self.sampling_options(train_size=len(splits.train), class_weight=class_weight,
                                        sample_weights=sample_weights, schedule=schedule,
                                        synthetic_ids=synthetic_ids)
        augment = None
        if self.augment:
            augment = build_augmentation(self.augment, backend=self.augment_backend,
                                         seed=self.seed)
        return build_loaders(splits, options, image_size=(self.image_size, self.image_size),
                             color_mode=self.color_mode, loader=self.loader_kind(),
                             cache=self.cache, augment=augment, synthetic_cache=synthetic_cache,
                             live_source=live_source)


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


@dataclass(frozen=True)
class RunData:
    """Steps 1-2: the run's resolved config, its real splits and its synthetic pool."""

    config: TrainConfig
    splits: DatasetSplits
    skipped: tuple[dict, ...]
    cache: SyntheticCache | None = None
    synthetic_source: object = None  # CacheSource, leakage-guarded
    synthetic_ids: frozenset[str] | None = None  # a --select-model selection's kept images
    selection: dict | None = None


@dataclass(frozen=True)
class Weighting:
    """Step 3: where class weights go, the loss (``fit``) or the loader's sample weights."""

    fit_class_weight: dict | None = None
    sampler_class_weight: object = None
    sample_weights: bool = False


class TrainingRun:
    """One training run; :meth:`run` performs the numbered steps in order, each step taking
    the values the earlier ones return. ``timings`` collects how long each took."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()

    def run(self) -> dict:
        # 1. Check the options, split the real data (bad input fails before any output) and
        #    resolve the colour mode.
        data = self.split()
        # 2. Open the synthetic cache, leaving out images derived from held-out images; with
        #    --select-model, keep its images near their class in feature space.
        data = self.open_synthetic(data)
        # 3. Choose where class weights go and how the synthetic ratio ramps up.
        weighting, schedule = self.weighting(data), self.ramp_schedule(data)
        # 4. Start the live generator; it is stopped whatever happens next.
        live = self.start_live(data)
        try:
            # 5. Build the training, validation and test loaders.
            train, validation, test = data.config.loaders(
                data.splits, synthetic_cache=data.synthetic_source,
                schedule=schedule, class_weight=weighting.sampler_class_weight,
                sample_weights=weighting.sample_weights, live_source=live,
                synthetic_ids=data.synthetic_ids)
            # 6. Train, recomputing batch-norm statistics before each validation; a selection
            #    or allocation by the run's own model switches the loader after its warm-up.
            model, history, adaptation = self.fit(data, weighting, train, validation)
            # 7. Evaluate on the held-out real test set, judge convergence, save the model.
            metrics = self.evaluate(data, model, test, history)
        finally:
            if live is not None:
                live.close()
        # 8. Account for what was trained on; write metrics, status and the matrix.
        return self.write_outputs(data, weighting, metrics, train, validation, test, adaptation)

    def split(self) -> RunData:
        _check_config(self.config)
        self.config.loader_kind()  # a loader the run cannot use fails before any output
        config, splits = self.config, self.config.splits()
        if config.synthetic_allocation and splits.validation is None:
            raise ConfigError("--synthetic-allocation confusion measures the model on the "
                              "validation split: give --val-split above 0 (or validation rows "
                              "in the manifest)")
        if config.color_mode == "auto":
            from genaug.data import infer_color_mode

            config = replace(config, color_mode=infer_color_mode(splits.index))
        check_writable(config.output_dir, config.model_dir)
        self.timings["index_s"] = time.perf_counter() - self.started
        self.log(f"{len(splits.train)} training, "
                 f"{len(splits.validation) if splits.validation else 0} validation and "
                 f"{len(splits.test)} test images ({config.color_mode}); "
                 f"test set: {splits.test_source}")
        skipped = tuple({"path": f.path, "reason": f.reason} for f in splits.skipped)
        for item in skipped:
            self.log(f"skipped {item['path']}: {item['reason']}")
        return RunData(config, splits, skipped)

    def open_synthetic(self, data: RunData) -> RunData:
        config, names = data.config, data.splits.class_names
        cache = synthetic = None
        if config.synthetic_cache:
            from genaug.sources import CacheSource

            if config.live_generator:  # the live producer writes there: it may not exist yet
                Path(config.synthetic_cache).mkdir(parents=True, exist_ok=True)
            cache = SyntheticCache(config.synthetic_cache, class_names=names)
            for line in cache.problems.lines():
                self.log(f"synthetic cache: {line}")
            synthetic = CacheSource(cache, class_names=names,
                                    exclude_source_ids=data.splits.held_out_ids())
            if synthetic.excluded_leakage:
                self.log(f"synthetic cache: {synthetic.excluded_leakage} image(s) derived "
                         "from validation/test images excluded from training")
        synthetic_counts = synthetic.counts() if synthetic is not None else np.zeros(len(names))
        empty = [n for n, c, s in zip(names, data.splits.train.counts(), synthetic_counts)
                 if c == 0 and s == 0]
        if empty and config.balance != "none":
            raise DatasetError(f"class(es) with no training image: {', '.join(empty)}; add "
                               "images, a synthetic cache covering them, or leave them out of "
                               "--classes")
        ids = selection = None
        if config.select_model and synthetic is not None and not config.live_generator:
            from genaug.classifier import load_feature_extractor
            from genaug.loaders import select_synthetic
            from genaug.sources import RealSource

            ids, selection = select_synthetic(
                load_feature_extractor(config.select_model), RealSource(data.splits.train),
                synthetic, method=config.synthetic_select, log=self.log)
            self.timings["select_s"] = selection["seconds"]
        return replace(data, cache=cache, synthetic_source=synthetic, synthetic_ids=ids,
                       selection=selection)

    def weighting(self, data: RunData) -> Weighting:
        config = data.config
        sample_weights = data.synthetic_source is not None and config.synthetic.weight != 1.0
        if not config.class_weights:
            return Weighting(sample_weights=sample_weights)
        if config.balance != "none":
            warnings.warn("--balanced with --class-weights corrects the imbalance twice; the "
                          "weights are computed from the distribution the loader delivers",
                          DoubleCorrectionWarning, stacklevel=2)
            return Weighting(sampler_class_weight="balanced", sample_weights=True)
        from genaug.sampling import compute_class_weights

        weights = compute_class_weights(data.splits.train.labels, data.splits.class_names)
        if sample_weights:
            return Weighting(sampler_class_weight=weights, sample_weights=True)
        return Weighting(fit_class_weight=weights)

    def ramp_schedule(self, data: RunData) -> RampSchedule | None:
        config = data.config
        if data.synthetic_source is None:
            return None
        return config.synthetic.schedule(epochs=config.epochs)

    def start_live(self, data: RunData):
        config = data.config
        if not config.live_generator:
            return None
        from genaug.generation import GateSpec
        from genaug.live import start_live_source

        gates = GateSpec(
            verify_model=config.live_verify_model or None,
            verify_threshold=config.live_verify_threshold,
            select_model=(config.select_model or None) if config.synthetic_select else None,
            select_method=config.synthetic_select or "feature-distance")
        return start_live_source(
            config.live_generator, data.splits.train,
            image_size=(config.image_size, config.image_size), color_mode=config.color_mode,
            cache_dir=config.synthetic_cache or Path(config.output_dir) / "live_cache",
            device=config.live_device, producer=config.live_producer,
            capacity=config.live_buffer, max_reuse=config.live_max_reuse, gates=gates,
            lora=config.live_lora, seed=config.seed, log=self.log)

    def recalibration_batches(self, data: RunData) -> list:
        """Batches of real training images, balanced as the run balances them, without
        augmentation or synthetic images, for :class:`training.models.BatchNormRecalibration`.
        """
        from genaug.loaders import BalancedBatchGenerator

        config, train = data.config, data.splits.train
        # A balanced epoch as long as a plain one, as the training loader makes it.
        epoch_size = len(train) if config.balance != "none" else None
        with warnings.catch_warnings():  # synthetic-only classes just add no real images here
            warnings.filterwarnings("ignore", message="classes with no training image")
            loader = BalancedBatchGenerator(
                train, balance=config.balance, epoch_size=epoch_size,
                batch_size=config.batch_size,
                image_size=(config.image_size, config.image_size),
                color_mode=config.color_mode, seed=config.seed)
        count = min(len(loader), max(1, RECALIBRATION_IMAGES // config.batch_size))
        batches = [loader[i][0] for i in range(count)]
        if len(batches) > 1 and len(batches[-1]) < len(batches[0]):
            batches.pop()  # one batch shape: the compiled forward pass is traced once
        return batches

    def fit(self, data: RunData, weighting: Weighting, train, validation):
        import keras

        from genaug.loaders import AdaptAfterWarmup
        from training.models import BatchNormRecalibration, build_cnn

        config = data.config
        keras.utils.set_random_seed(config.seed)
        model = build_cnn((config.image_size, config.image_size,
                           channels_of(config.color_mode)),
                          len(data.splits.class_names), width=config.model_width,
                          seed=config.seed)
        steps = max(len(train) * config.epochs, 1)
        optimizer = keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps))
        # Synthetic label smoothing makes the loaders yield one-hot rows (sampler.targets).
        loss = ("categorical_crossentropy" if train.sampler.categorical
                else "sparse_categorical_crossentropy")
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        recalibration = BatchNormRecalibration(
            self.recalibration_batches(data),
            validation_batches=max(1, VALIDATION_RECALIBRATION_IMAGES // config.batch_size))
        callbacks, adaptation = [recalibration], None
        select = config.synthetic_select if not config.select_model else None
        if select or config.synthetic_allocation:
            # The model adapts the pool with the statistics the end of a fit would give it.
            def recalibrate_after_warmup(epoch, logs):
                if epoch + 1 == config.synthetic.warmup_epochs:
                    recalibration.on_train_end()

            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=recalibrate_after_warmup))
            adaptation = AdaptAfterWarmup(
                train, warmup_epochs=config.synthetic.warmup_epochs, select=select,
                allocate=config.synthetic_allocation, validation=validation, log=self.log)
            callbacks.append(adaptation)
        started = time.perf_counter()
        progress = (1 if sys.stdout.isatty() else 2) if config.verbose else 0
        # The loaders shuffle deterministically and move to each next epoch themselves.
        history = model.fit(train, validation_data=validation, epochs=config.epochs,
                            class_weight=weighting.fit_class_weight, callbacks=callbacks,
                            shuffle=False, verbose=progress).history
        self.timings["train_s"] = time.perf_counter() - started
        if adaptation is not None and adaptation.selection is not None:
            self.timings["select_s"] = adaptation.selection["seconds"]
        return model, history, adaptation

    def evaluate(self, data: RunData, model, test, history: dict) -> dict:
        from genaug.classifier import save_classifier
        from genaug.evidence import classification_metrics, convergence

        config, names = data.config, data.splits.class_names
        started = time.perf_counter()
        y_pred = np.argmax(model.predict(test, verbose=0), axis=1)
        self.timings["evaluate_s"] = time.perf_counter() - started
        metrics = classification_metrics(data.splits.test.labels, y_pred, names)
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

    def write_outputs(self, data: RunData, weighting: Weighting, metrics: dict, train,
                      validation, test, adaptation) -> dict:
        import keras

        from genaug.loaders import training_status
        from training.evaluate import plot_confusion_matrix

        config, names, sampler = data.config, data.splits.class_names, train.sampler
        comp = sampler.composition(config.epochs)
        status = training_status(train, epochs=config.epochs, validation=validation, test=test,
                                 adaptation=adaptation, selection=data.selection,
                                 skipped_files=data.skipped, composition=comp).to_json()
        applied = weighting.fit_class_weight if weighting.fit_class_weight is not None else (
            dict(enumerate(sampler.class_weight.tolist())) if sampler.class_weight is not None
            else None)
        metrics.update(
            class_weights=None if applied is None else {names[int(k)]: float(v)
                                                        for k, v in applied.items()},
            composition=comp.to_dict(),
            synthetic_shares={"synthetic_cap": config.synthetic.cap,
                              "synthetic_pool_cap": config.synthetic.pool_cap,
                              "per_class": comp.synthetic_shares()},
            sampling=sampler.summary(),
            synthetic_schedule=status["synthetic_schedule"],
            train_counts=dict(zip(names, data.splits.train.counts().tolist())),
            test_set=data.splits.test_source,
            skipped_files=list(data.skipped),
            config=asdict(config),
            versions={**package_versions(), "keras_backend": keras.backend.backend()},
        )
        if data.synthetic_source is not None:
            metrics["synthetic"] = {"cache": str(config.synthetic_cache),
                                    "usable_images": len(data.synthetic_source),
                                    "excluded_for_leakage": data.synthetic_source.excluded_leakage,
                                    "problems": data.cache.problems.to_dict()}
            coverage = metrics["synthetic_coverage"] = status["synthetic_coverage"]
            self.log(f"synthetic images reached {', '.join(coverage['received']) or 'no class'}"
                     f"; none for {', '.join(coverage['not_received']) or 'no class'}")
        if getattr(train, "live_source", None) is not None:
            metrics["live"] = train.live_source.statistics()
        for key in ("synthetic_selection", "synthetic_allocation"):
            if key in status:
                metrics[key] = status[key]
        self.timings["total_s"] = time.perf_counter() - self.started
        metrics["timings"] = self.timings
        out = Path(config.output_dir)
        write_json(out / STATUS_FILE, status)
        write_json(out / "metrics.json", metrics)
        plot_confusion_matrix(metrics["confusion_matrix"], names, out / "confusion_matrix.png",
                              title=f"{config.model_name}: balanced accuracy "
                                    f"{metrics['balanced_accuracy']:.3f}")
        if config.verbose:
            from genaug.evidence import per_class_table

            print(per_class_table(metrics))
        return metrics

    def log(self, message: str) -> None:
        if self.config.verbose:
            print(message, flush=True)


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
    config.synthetic.schedule(epochs=config.epochs)  # a cool-down that leaves no epoch
    uses_synthetic = config.synthetic.needing_source()
    if uses_synthetic and not (config.synthetic_cache or config.live_generator):
        raise ConfigError("synthetic options need --synthetic-cache or --live-generator")
    if config.live_verify_model and not config.live_generator:
        raise ConfigError("--live-verify-model needs --live-generator")
    if config.live_generator:  # fail before any folder is created, not in the producer
        from genaug.live import check_live_generator

        check_live_generator(config.live_generator, lora=config.live_lora)
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

"""``genaug train``."""

from __future__ import annotations

import os

import click

from genaug.cli._options import parse_class_list, recipe_from_options, recipe_options
from genaug.generation import DEFAULT_VERIFY_THRESHOLD


def parse_epoch_size(ctx, param, value):
    if value is None or value == "max":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter("expected an integer or 'max'") from None


def train_options(function):
    """The options of a training run (shared by ``train`` and ``compare``); the synthetic
    recipe's come from its fields (:func:`~genaug.cli._options.recipe_options`)."""
    before_recipe = [
        click.option("--classes", callback=parse_class_list,
                     help="Explicit class list a,b,c (classes without images count 0)."),
        click.option("--class-weights/--no-class-weights", default=False,
                     help="Weight the loss by scikit-learn's balanced class weights."),
        click.option("--balanced-batches", is_flag=True,
                     help="Balanced sampling with equal class counts in every batch."),
        click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True),
        click.option("--image-size", type=click.IntRange(8, 1024), default=32,
                     show_default=True, help="Images are resized to N x N."),
        click.option("--color-mode", type=click.Choice(["auto", "grayscale", "rgb"]),
                     default="auto", show_default=True,
                     help="auto: grayscale when most images are single-channel, else rgb."),
        click.option("--test-dir", type=click.Path(), help="Held-out real test set."),
        click.option("--val-split", type=click.FloatRange(0, 1, max_open=True), default=0.1,
                     show_default=True),
        click.option("--test-split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     default=0.2, show_default=True,
                     help="Stratified test share when there is no --test-dir."),
        click.option("--epoch-size", callback=parse_epoch_size,
                     help="Samples per balanced epoch: N or 'max' (classes x largest class); "
                          "default: the real training set size."),
        click.option("--loader", type=click.Choice(["auto", "tfdata", "pydataset"]),
                     default="auto", show_default=True),
        click.option("--cache", default="auto", show_default=True, metavar="auto|memory|none|DIR",
                     help="Decode the training images once into an image store: auto (in "
                          "memory when they fit a quarter of the available memory), memory, "
                          "none (decode every epoch) or a store directory kept for later runs "
                          "(compare's arms and seeds share it). Both loaders."),
        click.option("--learning-rate", type=float, default=1e-3, show_default=True),
        click.option("--model-width", type=click.IntRange(min=4), default=32, show_default=True,
                     help="Filters of the CNN's first block (doubling per block)."),
        click.option("--augment", callback=parse_class_list,
                     help="Training augmentation, e.g. flip,rotation,zoom,contrast "
                          "(translation, brightness; randaugment with keras_cv)."),
        click.option("--augment-backend", type=click.Choice(["keras", "keras_cv"]),
                     default="keras", show_default=True),
        click.option("--synthetic-cache", type=click.Path(), help="Synthetic cache to mix in."),
    ]
    # Here, in the help: one option per flag of the synthetic recipe's fields.
    after_recipe = [
        click.option("--live-generator", type=click.Path(),
                     help="Generator directory producing fresh images during fit."),
        click.option("--live-lora", type=click.Path(),
                     help="LoRA adapter (genaug fit-lora) for a Stable Diffusion "
                          "--live-generator."),
        click.option("--live-device", default="cuda", show_default=True),
        click.option("--live-buffer", type=click.IntRange(min=1), default=256,
                     show_default=True),
        click.option("--live-max-reuse", type=click.IntRange(min=1), default=4,
                     show_default=True),
        click.option("--live-producer", type=click.Choice(["auto", "process", "thread"]),
                     default="auto", show_default=True,
                     help="Where the live generator runs: a child process (generation never "
                          "holds the training process's GIL) or a thread; auto: thread, "
                          "measured faster (docs/performance.md)."),
        click.option("--live-verify-model", type=click.Path(),
                     help="Reference classifier (.keras, trained with --balanced) gating live "
                          "images, as genaug generate --verify-model does."),
        click.option("--live-verify-threshold", type=click.FloatRange(0, 1),
                     default=DEFAULT_VERIFY_THRESHOLD, show_default=True),
        click.option("--synthetic-select",
                     type=click.Choice(["feature-distance", "class-margin"]), default=None,
                     help="feature-distance: keep only the cache's images within twice their "
                          "class's real radius in feature space (DiffuLT); class-margin: only "
                          "those whose own class ranks first; with --live-generator (and "
                          "--select-model) the same rule gates the live images; "
                          "docs/synthetic.md."),
        click.option("--select-model", type=click.Path(),
                     help="Classifier (.keras, trained with --balanced) whose features "
                          "select; default: the run's own model after --warmup-epochs."),
        click.option("--synthetic-allocation", type=click.Choice(["confusion"]), default=None,
                     help="After --warmup-epochs, scale each class's --synthetic-cap by its "
                          "validation error relative to the mean (more synthetic images where "
                          "the model errs); docs/synthetic.md."),
        click.option("--quiet", is_flag=True, help="No progress output."),
    ]
    for option in reversed(after_recipe):
        function = option(function)
    function = recipe_options(function)
    for option in reversed(before_recipe):
        function = option(function)
    return function


def config_from_options(**options):
    """A ``TrainConfig`` from click options: the recipe's flags make its ``synthetic``
    recipe, the other options' names match the config fields."""
    from training.pipeline import TrainConfig

    quiet = options.pop("quiet", False)
    synthetic = recipe_from_options(options)
    return TrainConfig(verbose=0 if quiet else 1, synthetic=synthetic, **options)


@click.command()
@click.argument("data_dir", required=False, type=click.Path())
@click.option("--balanced/--no-balanced", default=False,
              help="Balanced sampling (oversampling; see --balanced-batches).")
@train_options
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--output-dir", default="outputs", show_default=True, type=click.Path())
@click.option("--model-dir", default="models", show_default=True, type=click.Path())
@click.option("--model-name", default="genaug_cnn", show_default=True)
def train(**options):
    """Train a CNN on DATA_DIR (default: the embedded long-tailed digits) and evaluate it.

    Writes OUTPUT_DIR/metrics.json, confusion_matrix.png, status.json and
    MODEL_DIR/<model-name>.keras.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.pipeline import run_training

    config = config_from_options(**options)
    metrics = run_training(config)
    if (metrics.get("live") or {}).get("warning"):
        click.echo(f"warning: {metrics['live']['warning']}", err=True)
    click.echo(f"wrote {config.output_dir}/metrics.json, {config.output_dir}/status.json, "
               f"{config.output_dir}/confusion_matrix.png and "
               f"{config.model_dir}/{config.model_name}.keras")

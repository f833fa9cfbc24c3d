"""``genaug compare``, ``genaug quality`` and ``genaug report``: the evidence commands."""

from __future__ import annotations

import os
from pathlib import Path

import click

from genaug.cli._options import parse_class_list
from genaug.cli._train import config_from_options, train_options
from genaug.exceptions import CacheError, ConfigError, DatasetError

DEFAULT_ARMS = ("plain", "class_weights", "balanced")


def _load_index(data_dir, classes):
    from genaug.data import DatasetIndex

    index = DatasetIndex.load(data_dir, class_names=classes)
    if len(index) == 0:
        raise DatasetError(f"no usable images found in {data_dir}")
    return index


def _open_cache(directory, class_names):
    from genaug.cache import SyntheticCache

    cache = SyntheticCache(directory, class_names=class_names)
    for line in cache.problems.lines():
        click.echo(f"warning: synthetic cache: {line}", err=True)
    return cache


@click.command()
@click.argument("data_dir", required=False, type=click.Path())
@click.option("--arms", default=None,
              help="Comma-separated arm names: plain, class_weights, balanced, "
                   "balanced_synthetic, the recipe levers balanced_synthetic_select, _cooldown, "
                   "_fill, _weight03, _smooth, _mixup, _confusion, balanced_synthetic_legacy "
                   "(docs/evidence.md), balanced_augment, balanced_synthetic_augment, "
                   "balanced_variation and balanced_variation_augment (with "
                   "--variation-cache), oracle (with --oracle-cache) and any registered with "
                   "genaug.evidence.register_arm. Default: plain,class_weights,balanced "
                   "(+ balanced_synthetic with --synthetic-cache, + balanced_variation with "
                   "--variation-cache).")
@click.option("--seeds", default="0,1,2", show_default=True,
              help="Comma-separated seeds; every arm runs at each (at least 3 recommended).")
@train_options
@click.option("--output-dir", default="outputs", show_default=True, type=click.Path())
@click.option("--model-dir", default="models", show_default=True, type=click.Path())
@click.option("--threshold", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Smallest mean difference (0.01 = 1 point) a verdict counts as an effect.")
@click.option("--verbose", is_flag=True, help="Show each run's training output.")
@click.option("--oracle-cache", type=click.Path(), default=None,
              help="A cache of real images held out from training (genaug cache import): adds "
                   "the arm 'oracle', balanced_synthetic's recipe on those images, the bound "
                   "of what a perfect generator would add.")
@click.option("--variation-cache", type=click.Path(), default=None,
              help="A cache of variations of real training images (genaug generate from a "
                   "plan made with --variation-strength): the arms balanced_variation and "
                   "balanced_variation_augment train on it, as balanced_synthetic and "
                   "balanced_synthetic_augment do on --synthetic-cache.")
@click.option("--resume", is_flag=True,
              help="Keep the runs OUTPUT_DIR/compare.json records as ok with the same options; "
                   "train only the others.")
def compare(data_dir, arms, seeds, output_dir, threshold, verbose, oracle_cache,
            variation_cache, resume, **options):
    """Train each arm at each seed on the same real test set and say whether it helped.

    DATA_DIR defaults to the embedded long-tailed digits. Every arm uses the same model,
    epochs, seeds and held-out real test set (--test-dir, the manifest's test split, or a
    stratified split seeded by the run's seed alone, so never dependent on the arm). Writes
    OUTPUT_DIR/compare.json (every run's metrics), compare.md (means, standard deviations,
    paired per-seed differences, verdicts) and compare.png. Compare arms only once they have
    converged: short budgets hide the differences.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from genaug.evidence import (
        ORACLE,
        oracle_arm,
        parse_arms,
        parse_seeds,
        register_arm,
        run_compare,
    )

    synthetic_cache = options.pop("synthetic_cache")
    if arms is None:
        arms = ",".join(DEFAULT_ARMS + (("balanced_synthetic",) if synthetic_cache else ())
                        + (("balanced_variation",) if variation_cache else ()))
    arm_names = [name.strip() for name in arms.split(",") if name.strip()]
    if oracle_cache is not None:
        if not Path(oracle_cache).is_dir():
            raise CacheError(f"oracle cache not found: {oracle_cache}")
        register_arm(oracle_arm(oracle_cache), replace_existing=True)
        if ORACLE not in arm_names:
            arm_names.append(ORACLE)
    elif ORACLE in arm_names:
        raise ConfigError("the oracle arm needs --oracle-cache")
    arm_list = parse_arms(arm_names)
    seed_list = parse_seeds(seeds)
    if options.pop("class_weights"):
        click.echo("warning: --class-weights is ignored by compare; use the class_weights arm",
                   err=True)
    options.pop("quiet")
    # Mistakes every run would repeat are reported once, before any training.
    for flag, path in (("DATA_DIR", data_dir), ("--test-dir", options.get("test_dir"))):
        if path is not None and not Path(path).exists():
            raise DatasetError(f"{flag} not found: {path}")
    for kind, cache, what in (("synthetic", synthetic_cache, "synthetic data"),
                              ("variation", variation_cache, "variations of real images")):
        if cache is not None and not Path(cache).is_dir():
            raise CacheError(f"{kind} cache not found: {cache}")
        if cache and not any(a.needs_cache and a.cache == kind for a in arm_list):
            click.echo(f"warning: --{kind}-cache is unused: no arm trains on {what}", err=True)
    from training.pipeline import run_training

    base = config_from_options(data_dir=data_dir, output_dir=output_dir, quiet=not verbose,
                               **options)
    click.echo(f"compare: {len(arm_list)} arm(s) x {len(seed_list)} seed(s) = "
               f"{len(arm_list) * len(seed_list)} runs of {base.epochs} epochs")
    result = run_compare(base, arms=[a.name for a in arm_list], seeds=seed_list,
                         output_dir=output_dir, runner=run_training,
                         synthetic_cache=synthetic_cache, variation_cache=variation_cache,
                         progress=click.echo,
                         threshold=threshold, resume=resume)
    click.echo("")
    for c in result["comparisons"]:
        click.echo(f"{c['arm']} vs {c['reference']}: {c['verdict']}")
        if c["harm"]:
            click.echo(f"  {c['harm']}")
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    out = Path(output_dir)
    click.echo(f"wrote {out / 'compare.json'}, {out / 'compare.md'}, {out / 'compare.png'}")
    if all(r["status"] != "ok" for r in result["runs"]):
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--synthetic-cache", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--feature-model", type=click.Path(exists=True, path_type=Path), default=None,
              help="Any Keras classifier (.keras) as the feature extractor (penultimate layer, "
                   "or the layer named 'features'). Default: train a small balanced classifier "
                   "on the real images.")
@click.option("--feature-layer", default=None, help="Use this layer of the feature model.")
@click.option("--feature-epochs", type=click.IntRange(min=1), default=5, show_default=True,
              help="Epochs of the classifier trained when no --feature-model is given.")
@click.option("--image-size", type=click.IntRange(min=8), default=32, show_default=True,
              help="Input size of the trained feature classifier (or of a size-agnostic model).")
@click.option("--color-mode", type=click.Choice(["auto", "grayscale", "rgb"]), default="auto",
              show_default=True,
              help="Of the trained feature classifier; auto: from the real images.")
@click.option("--classes", callback=parse_class_list, default=None)
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("outputs"),
              show_default=True)
@click.option("--max-per-class", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Real and synthetic images sampled per class.")
@click.option("--kid-subsets", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--kid-subset-size", type=click.IntRange(min=2), default=1000, show_default=True)
@click.option("--phash-distance", type=click.IntRange(0, 64), default=4, show_default=True,
              help="Hashes at most this many bits apart are near-duplicates.")
@click.option("--seed", type=int, default=0, show_default=True)
def quality(data_dir, synthetic_cache, feature_model, feature_layer, feature_epochs, image_size,
            color_mode, classes, output_dir, max_per_class, kid_subsets, kid_subset_size,
            phash_distance, seed):
    """Measure synthetic images against the real ones, per class and overall.

    KID and FID in the feature space of a classifier of this dataset, SSIM to the nearest real
    image, diversity, near-duplicates and the verification pass rate. Writes
    OUTPUT_DIR/quality.json and prints a table.
    """
    from genaug.classifier import load_feature_extractor
    from genaug.evidence import measure_quality, quality_table, train_feature_extractor
    from genaug.io import write_json

    index = _load_index(data_dir, classes)
    cache = _open_cache(synthetic_cache, index.class_names)
    if len(cache) == 0:
        raise ConfigError(f"the synthetic cache {synthetic_cache} has no usable images")
    if feature_model is not None:
        extractor = load_feature_extractor(feature_model, layer=feature_layer,
                                           image_size=(image_size, image_size))
        names = extractor.details.get("class_names")
        if names and list(names) != list(index.class_names):
            click.echo("warning: the feature model was trained on other classes than "
                       "DATA_DIR's; its features may not separate these classes", err=True)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        target = output_dir / "quality_feature_model"
        click.echo(f"quality: no --feature-model; training a balanced classifier on the real "
                   f"images ({feature_epochs} epochs) into {target} ...")
        from training.pipeline import TrainConfig, run_training

        extractor = train_feature_extractor(
            data_dir, train_classifier=lambda **o: run_training(TrainConfig(**o)),
            output_dir=target, epochs=feature_epochs, image_size=image_size,
            color_mode=color_mode, classes=classes, seed=seed)
    click.echo(f"quality: features from {extractor.source}, layer {extractor.layer!r} "
               f"({extractor.dimension} dimensions)")
    result = measure_quality(index, cache, extractor, max_per_class=max_per_class,
                             kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                             phash_distance=phash_distance, seed=seed, progress=click.echo)
    result["data_dir"] = str(data_dir)
    result["synthetic_cache"] = str(synthetic_cache)
    path = write_json(output_dir / "quality.json", result)
    click.echo("")
    click.echo(quality_table(result))
    click.echo("")
    grouped: dict[str, list[str]] = {}
    for name, metrics in [*result["classes"].items(), ("ALL", result["overall"])]:
        for warning in metrics.get("warnings", []):
            if warning != "no synthetic images":
                grouped.setdefault(warning, []).append(name)
    for warning, names in grouped.items():
        click.echo(f"warning: {warning} ({', '.join(names)})")
    click.echo(f"note: {result['feature_space']['note']}")
    click.echo(f"wrote {path}")


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--synthetic-cache", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path), default=Path("outputs/report"),
              show_default=True, help="Report folder (PNGs and index.html).")
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("outputs"),
              show_default=True,
              help="Where train/compare/quality wrote their files (status.json, confusion "
                   "matrices, compare.png); used when present.")
@click.option("--classes", callback=parse_class_list, default=None)
@click.option("--thumbnails", type=click.IntRange(min=1), default=8, show_default=True,
              help="Real and synthetic thumbnails per class.")
@click.option("--thumbnail-size", type=click.IntRange(min=16), default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def report(data_dir, synthetic_cache, out, output_dir, classes, thumbnails, thumbnail_size, seed):
    """Draw the pictures to inspect before trusting a synthetic set, with an index.html."""
    from genaug.evidence import build_report

    index = _load_index(data_dir, classes)
    cache = _open_cache(synthetic_cache, index.class_names) if synthetic_cache else None
    written = build_report(index, out=out, cache=cache, output_dir=output_dir,
                           thumbnails=thumbnails, thumbnail_size=thumbnail_size, seed=seed)
    click.echo(f"wrote {len(written['images'])} image(s) and {written['html']}")

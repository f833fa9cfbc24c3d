"""``genaug export``."""

from __future__ import annotations

import click

from genaug.cli._options import parse_class_list
from genaug.sampling import DEFAULT_CAP


@click.command("export")
@click.argument("data_dir", type=click.Path())
@click.option("--synthetic-cache", type=click.Path(),
              help="Synthetic cache to add training images from (default: real images only).")
@click.option("--out", "out_dir", type=click.Path(), required=True,
              help="Folder to write (must not exist or be empty, unless --overwrite).")
@click.option("--val-split", "validation_split", type=float, default=0.15, show_default=True,
              help="Share of each class's real images held out for validation.")
@click.option("--test-split", type=float,
              help="Share of each class's real images held out for testing [default: 0.15; "
                   "not with --test-dir].")
@click.option("--test-dir", type=click.Path(),
              help="A separate test folder or manifest instead of --test-split.")
@click.option("--target-per-class", type=int,
              help="Training images per class to fill up to with synthetic images "
                   "(default: the largest class's real training images).")
@click.option("--synthetic-cap", type=float, default=DEFAULT_CAP, show_default=True,
              help="Largest synthetic share of a class's training images.")
@click.option("--link", type=click.Choice(["hard", "copy", "symlink"]), default="hard",
              show_default=True,
              help="How images are placed: hard links (no extra disk; copies across "
                   "filesystems), copies or symbolic links.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--classes", "class_names", callback=parse_class_list,
              help="Only these classes, in this label order (default: all, sorted).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
def export(data_dir, synthetic_cache, out_dir, validation_split, test_split, test_dir,
           target_per_class, synthetic_cap, link, seed, class_names, overwrite):
    """Write DATA_DIR's balanced real + synthetic training set as files other tools read.

    OUT gets train/, val/ and test/ folders of <class>/<image> (synthetic images in train
    only), train.csv, val.csv and test.csv manifests, label_map.json, status.json and
    env_report.json.
    """
    from genaug.exceptions import ConfigError
    from genaug.export import export_dataset

    if test_dir is not None and test_split is not None:
        raise ConfigError("give --test-split or --test-dir, not both")
    parameters = dict(click.get_current_context().params)
    result = export_dataset(
        data_dir, out_dir=out_dir, synthetic_cache=synthetic_cache,
        validation_split=validation_split,
        test_split=test_split if test_split is not None or test_dir else 0.15,
        test_dir=test_dir, target_per_class=target_per_class, synthetic_cap=synthetic_cap,
        link=link, seed=seed, overwrite=overwrite, class_names=class_names,
        parameters=parameters)
    for line in result.lines():
        click.echo(line)

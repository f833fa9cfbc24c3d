"""``genaug analyze``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from genaug.cli._options import parse_class_list
from genaug.data import HUGE_PIXELS, TINY_SIDE
from genaug.exceptions import OutputError


@click.command()
@click.argument("data_dir", type=click.Path())
@click.option("--classes", callback=parse_class_list, help="Explicit class list a,b,c.")
@click.option("--json", "json_path", type=click.Path(), help="Also write the report as JSON.")
@click.option("--synthetic-cache", type=click.Path(), help="Also report this synthetic cache.")
def analyze(data_dir, classes, json_path, synthetic_cache):
    """Class counts, imbalance, unusable files, modes and sizes of DATA_DIR."""
    from genaug.cache import SyntheticCache
    from genaug.data import DatasetIndex, analyze_dataset

    if json_path and Path(json_path).is_dir():
        raise OutputError(f"--json {json_path} is a directory; give a file name")
    index = DatasetIndex.load(data_dir, class_names=classes)
    report = analyze_dataset(index)
    cache = None
    if synthetic_cache:
        cache = SyntheticCache(synthetic_cache, class_names=index.class_names)
        report["synthetic_cache"] = {"path": str(synthetic_cache), "counts": cache.counts(),
                                     "problems": cache.problems.to_dict(),
                                     **cache.provenance()}
    width = max(10, *(len(n) for n in index.class_names))
    click.echo(f"{report['num_images']} images, {report['num_classes']} classes in {data_dir}")
    header = f"{'class':<{width}} {'count':>7} {'share':>7}"
    click.echo(header + (f" {'synthetic':>9}" if cache else ""))
    for name, row in report["classes"].items():
        line = f"{name:<{width}} {row['count']:>7} {row['share']:>7.1%}"
        click.echo(line + (f" {cache.counts().get(name, 0):>9}" if cache else ""))
    ratio = report["imbalance_ratio"]
    click.echo(f"imbalance ratio (max/min): {ratio:.2f}" if ratio else "imbalance ratio: n/a")
    if report["empty_classes"]:
        click.echo(f"empty classes: {', '.join(report['empty_classes'])}")
    click.echo(f"modes: {report['modes']}; sizes: {report['sizes']['distinct']} distinct, "
               f"min {report['sizes']['min']}, max {report['sizes']['max']}")
    if report["tiny_images"]:
        click.echo(f"{len(report['tiny_images'])} tiny image(s) (side < {TINY_SIDE} px)")
    if report["huge_images"]:
        click.echo(f"{len(report['huge_images'])} huge image(s) "
                   f"(over {HUGE_PIXELS / 1e6:g} megapixels)")
    for skipped in report["skipped_files"]:
        click.echo(f"skipped {skipped['path']}: {skipped['reason']}")
    if cache is not None:
        for line in cache.problems.lines():
            click.echo(f"synthetic cache: {line}")
    if json_path:
        _write_json(json_path, report)
        click.echo(f"wrote {json_path}")


def _write_json(path, report) -> None:
    """Write the report atomically; any failure is a one-line :class:`OutputError`."""
    from genaug.io import atomic_write_bytes

    try:
        atomic_write_bytes(Path(path), json.dumps(report, indent=2).encode())
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None

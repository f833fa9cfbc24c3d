"""``genaug cache``: manage synthetic caches."""

from __future__ import annotations

import click

from genaug.cli._options import parse_class_list


@click.group()
def cache():
    """Inspect and fill synthetic caches."""


@cache.command("import")
@click.argument("src_dir", type=click.Path())
@click.option("--cache", "cache_dir", required=True, type=click.Path(),
              help="Cache directory (created if missing).")
@click.option("--source-map", type=click.Path(),
              help="CSV file,source_id naming the real image each file was derived from.")
@click.option("--classes", callback=parse_class_list, help="Only import these classes.")
def import_(src_dir, cache_dir, source_map, classes):
    """Import SRC_DIR/<class>/<image> made elsewhere (records with generator 'external')."""
    from genaug.synthetic import import_folder

    result = import_folder(src_dir, cache_dir, class_names=classes, source_map=source_map)
    click.echo(f"imported {result['imported']} image(s) into {cache_dir} "
               f"({result['already_present']} already present)")
    for skipped in result["skipped"]:
        click.echo(f"skipped {skipped['path']}: {skipped['reason']}")
    unmatched = result.get("unmatched_source_map") or []
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (", ..." if len(unmatched) > 5 else "")
        click.echo(f"warning: {len(unmatched)} --source-map entr"
                   f"{'y names' if len(unmatched) == 1 else 'ies name'} no imported file: "
                   f"{shown}", err=True)


@cache.command("check")
@click.argument("cache_dir", type=click.Path())
@click.option("--classes", callback=parse_class_list, help="The dataset's classes.")
def check(cache_dir, classes):
    """Report per-class counts and problems of a cache."""
    from genaug.synthetic import SyntheticCache

    opened = SyntheticCache(cache_dir, class_names=classes)
    click.echo(f"{len(opened)} usable record(s) in {cache_dir}")
    for name, count in sorted(opened.counts().items()):
        click.echo(f"  {name}: {count}")
    for line in opened.problems.lines():
        click.echo(f"problem: {line}")

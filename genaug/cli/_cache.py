"""``genaug cache``: manage synthetic caches."""

from __future__ import annotations

import sys

import click

from genaug.cli._options import RenamedOption, parse_class_list


@click.group()
def cache():
    """Inspect and fill synthetic caches."""


@cache.command("import")
@click.argument("src_dir", type=click.Path())
@click.option("--synthetic-cache", "--cache", "cache_dir", cls=RenamedOption, required=True,
              type=click.Path(), help="Synthetic cache directory (created if missing).")
@click.option("--source-map", type=click.Path(),
              help="CSV file,source_id naming the real image each file was derived from.")
@click.option("--classes", callback=parse_class_list, help="Only import these classes.")
def import_(src_dir, cache_dir, source_map, classes):
    """Import SRC_DIR/<class>/<image> made elsewhere (records with generator 'external')."""
    from genaug.cache import import_folder

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
@click.option("--repair", is_flag=True,
              help="Remove what an interrupted write left: image files without a record, "
                   "temporary files, records whose file is missing, malformed lines and "
                   "repeated ids.")
def check(cache_dir, classes, repair):
    """Report per-class counts and problems of a cache (exit 1 when it needs --repair)."""
    from genaug.cache import SyntheticCache, repair_cache

    if repair:
        SyntheticCache(cache_dir)  # a missing cache is an error, not an empty repair
        removed = repair_cache(cache_dir)
        kinds = (("image file(s) without a record", removed.orphan_files),
                 ("temporary file(s)", removed.temporary_files),
                 ("record(s) whose file is missing", removed.missing_files),
                 ("malformed record line(s)", [f"line {n}" for n, _ in removed.bad_lines]),
                 ("repeated record id(s)", removed.duplicate_ids))
        for what, items in kinds:
            if items:
                shown = ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")
                click.echo(f"removed {len(items)} {what}: {shown}")
        if not removed:
            click.echo("nothing to repair")
    opened = SyntheticCache(cache_dir, class_names=classes)
    click.echo(f"{len(opened)} usable record(s) in {cache_dir}")
    for name, count in sorted(opened.counts().items()):
        click.echo(f"  {name}: {count}")
    for line in opened.problems.lines():
        click.echo(f"problem: {line}")
    problems = opened.problems
    if any((problems.orphan_files, problems.temporary_files, problems.missing_files,
            problems.bad_lines, problems.duplicate_ids)):
        click.echo(f"run `genaug cache check {cache_dir} --repair` to remove them", err=True)
        sys.exit(1)

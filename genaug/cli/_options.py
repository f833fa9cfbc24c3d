"""Option parsing shared by several commands."""

from __future__ import annotations

import click


def parse_class_list(ctx, param, value):
    """``a,b,c`` -> ``("a", "b", "c")``; empty -> None."""
    if value is None:
        return None
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise click.BadParameter("expected a comma-separated list of class names")
    return names

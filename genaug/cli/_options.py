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


class RenamedOption(click.Option):
    """An option whose first name is the one ``--help`` and error messages show; its other
    names are the spellings it had before, still accepted for one release."""

    def _first_name_only(self, method, ctx):
        names, self.opts = self.opts, self.opts[:1]
        try:
            return method(ctx)
        finally:
            self.opts = names

    def get_help_record(self, ctx):
        return self._first_name_only(super().get_help_record, ctx)

    def get_error_hint(self, ctx):
        return self._first_name_only(super().get_error_hint, ctx)

"""Option parsing shared by several commands."""

from __future__ import annotations

from pathlib import Path

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


def _click_type(flag):
    """The click type of a :class:`~genaug.sampling.RecipeFlag`."""
    if flag.kind is str:
        return click.STRING
    if flag.kind is int:
        return click.IntRange(min=flag.low, max=flag.high, min_open=flag.low_open,
                              max_open=flag.high_open)
    number = click.FloatRange(min=flag.low, max=flag.high, min_open=flag.low_open,
                              max_open=flag.high_open)
    return (number, number) if flag.kind is tuple else number


def _checked(option):
    """A click callback that checks a text flag's value as the recipe does."""
    from genaug.exceptions import ConfigError

    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return option.check(value)
        except ConfigError as error:
            raise click.BadParameter(str(error)) from None

    return callback


def _flag_parameters():
    """``(parameter name, field name, flag, option)`` for every command-line flag of the
    synthetic recipe, in field order: a field's first flag is named by its keyword (so that
    library messages naming the keyword print the flag), the others by themselves."""
    from genaug.sampling import SyntheticRecipe

    for name, option in SyntheticRecipe.options().items():
        for position, flag in enumerate(option.flags):
            parameter = option.keyword if position == 0 else \
                flag.name.lstrip("-").replace("-", "_")
            yield parameter, name, flag, option


def recipe_options(function):
    """Add one click option per flag of every :class:`~genaug.sampling.SyntheticRecipe`
    field, with the field's default and help (:func:`recipe_from_options` reads them back)."""
    from genaug.sampling import SyntheticRecipe

    defaults = SyntheticRecipe.defaults()
    for parameter, name, flag, option in reversed(list(_flag_parameters())):
        default = defaults[name] if flag is option.flags[0] else None
        if flag.kind is bool:
            decorator = click.option(flag.name, parameter, is_flag=True, help=flag.help)
        else:
            decorator = click.option(
                flag.name, parameter, type=_click_type(flag), default=default,
                show_default=default is not None, help=flag.help,
                callback=_checked(option) if flag.kind is str else None)
        function = decorator(function)
    return function


def recipe_from_options(options: dict):
    """The :class:`~genaug.sampling.SyntheticRecipe` of the flags :func:`recipe_options`
    added, removed from ``options`` (the parsed values of a command). A field with several
    flags takes the one given; giving two is an error."""
    from genaug.exceptions import ConfigError
    from genaug.sampling import SyntheticRecipe

    values, given_by = {}, {}
    for parameter, name, _, _ in _flag_parameters():
        value = options.pop(parameter)
        if name in given_by and value is not None:
            raise ConfigError(f"give `{given_by[name]}` or `{parameter}`, not both")
        if value is not None:
            values[name], given_by[name] = value, parameter
    return SyntheticRecipe(**values)


def _gate_click_type(flag):
    """The click type of a :class:`~genaug.generation.GateFlag`."""
    if flag.kind is Path:
        return click.Path()
    if flag.choices:
        return click.Choice(flag.choices)
    return _click_type(flag)


def gate_options(function):
    """Add one click option per :class:`~genaug.generation.GateSpec` field with a flag,
    named by the field (so that library messages naming it print the flag), with the
    field's default and help (:func:`gate_spec_from_options` reads them back)."""
    from genaug.generation import GateSpec

    defaults = GateSpec.defaults()
    for name, flag in reversed(GateSpec.flags().items()):
        names = (flag.name, *flag.old_names, name)
        renamed = {"cls": RenamedOption} if flag.old_names else {}
        if flag.kind is bool:
            decorator = click.option(*names, is_flag=True, help=flag.help, **renamed)
        else:
            default = defaults[name] if flag.field_default else None
            decorator = click.option(*names, type=_gate_click_type(flag), default=default,
                                     show_default=default is not None, help=flag.help,
                                     **renamed)
        function = decorator(function)
    return function


def gate_spec_from_options(options: dict, *, extra_gates=()):
    """The :class:`~genaug.generation.GateSpec` of the flags :func:`gate_options` added,
    removed from ``options`` (the parsed values of a command), with ``extra_gates``. A flag
    at its ``off`` value leaves its gate out; a flag not given keeps the field's default."""
    from genaug.generation import GateSpec

    values = {}
    for name, flag in GateSpec.flags().items():
        value = options.pop(name)
        if value is not None:
            values[name] = None if flag.off is not None and value == flag.off else value
    return GateSpec(**values, extra_gates=extra_gates)

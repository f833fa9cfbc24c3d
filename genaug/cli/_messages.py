"""Library messages in the words of the command line.

The library names its Python parameters in messages, quoted with backticks: `` `steps` must be
at least 1``, ``pass `pixel_check=False` ``. A command prints them with its own flags
instead (``--steps``, ``--no-pixel-check``), read from the command's click options, so the
mapping cannot drift from the options a command really has. A reference to a parameter the
command has no option for is printed as it is; quotes around a value are dropped.
"""

from __future__ import annotations

import re

import click

REFERENCE = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)(?:=([^`]*))?`")


def _options(command: click.Command | None) -> dict[str, click.Option]:
    """The options of ``command`` (and of every subcommand of a group) by parameter name."""
    if command is None:
        return {}
    found = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for sub in getattr(command, "commands", {}).values():
        found.update({k: v for k, v in _options(sub).items() if k not in found})
    return found


def _long(opts: list[str]) -> str:
    return next((o for o in opts if o.startswith("--")), opts[0])


def cli_message(text: str, command: click.Command | None = None) -> str:
    """``text`` with every `` `name` `` / `` `name=value` `` reference to an option of
    ``command`` (default: the command running now) written as its flag."""
    if command is None:
        context = click.get_current_context(silent=True)
        command = None if context is None else context.command
    options = _options(command)

    def flag(match: re.Match) -> str:
        name, value = match.groups()
        option = options.get(name)
        if option is None:
            return match.group(0)
        if option.is_flag:
            if value == "False" and option.secondary_opts:
                return _long(option.secondary_opts)
            return _long(option.opts)
        if value in (None, "..."):
            return _long(option.opts)
        return f"{_long(option.opts)} {value.strip(chr(39) + chr(34))}"

    return REFERENCE.sub(flag, text)

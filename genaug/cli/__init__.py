"""The ``genaug`` command line. Commands are imported lazily so ``--help`` starts fast and a
command never pays for TensorFlow or torch unless it uses them."""

from __future__ import annotations

import importlib
import sys
import warnings

import click

from genaug.exceptions import GenaugError

# name -> "module:attribute"; one module per command family.
COMMANDS = {
    "analyze": "genaug.cli._analyze:analyze",
    "train": "genaug.cli._train:train",
    "cache": "genaug.cli._cache:cache",
    "plan": "genaug.cli._generation:plan",
    "fit-generator": "genaug.cli._generation:fit_generator",
    "distill-generator": "genaug.cli._generation:distill_generator",
    "fit-lora": "genaug.cli._lora:fit_lora",
    "generate": "genaug.cli._generation:generate",
    "compare": "genaug.cli._evidence:compare",
    "export": "genaug.cli._export:export",
    "quality": "genaug.cli._evidence:quality",
    "report": "genaug.cli._evidence:report",
}


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """``warning: <first line of the message>``: a user of the command needs what happened,
    not the Python file, line number and source line that raised it."""
    lines = str(message).strip().splitlines()
    return f"warning: {lines[0] if lines else category.__name__}\n"


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx):
        formatwarning, warnings.formatwarning = warnings.formatwarning, one_line_warning
        try:
            return super().invoke(ctx)
        except GenaugError as error:
            # A user mistake: one clear line, no traceback, in the command's own flags.
            from genaug.cli._messages import cli_message

            command = (None if ctx.invoked_subcommand is None
                       else self.get_command(ctx, ctx.invoked_subcommand))
            click.echo(f"Error: {cli_message(str(error), command)}", err=True)
            sys.exit(2)
        finally:
            warnings.formatwarning = formatwarning


@click.group(cls=LazyGroup)
@click.version_option(package_name="genaug")
def main():
    """genaug: balanced training and measured synthetic augmentation for imbalanced images."""

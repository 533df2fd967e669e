"""The ``dse`` command line.

Each command lives in its own module in this package and exposes a click object named
``command``; the group discovers them, so adding a command edits no shared file. The group
catches :class:`~dse.errors.DseError` only: one line on stderr, exit status 2.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from dse import __version__
from dse.errors import DseError

_NOT_COMMANDS = {"options", "output"}


class _DseGroup(click.Group):
    """A click group that turns user errors into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DseError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_DseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dse")
def cli() -> None:
    """Hardware-aware design-space exploration for early-exit CNNs."""


def _load_commands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in _NOT_COMMANDS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        command = getattr(module, "command", None)
        if command is not None:
            cli.add_command(command)


_load_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="dse", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

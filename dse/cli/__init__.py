"""The ``dse`` command line.

Each command lives in its own module in this package, named like the command, and exposes a
click object named ``command``; the group discovers the modules, so adding a command edits no
shared file. A command's module (and the library it imports at its top) is loaded only when that
command runs or help lists it, so ``dse train`` does not pay for the search stack. The group
catches :class:`~dse.errors.DseError` only: one line on stderr, exit status 2.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from dse import __version__
from dse.errors import DseError

#: modules of this package that hold no command
_NOT_COMMANDS = {"options", "output", "progress"}


class _OneLineUsageError(click.UsageError):
    """A click usage error shown as one line (click's own shows usage, a hint and the error)."""

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        where = self.ctx.command_path if self.ctx is not None else "dse"
        message = " ".join(self.format_message().split())
        click.echo(f"error: {message} (see '{where} -h')", err=True, file=file)


#: click >= 8.2 shows a group's help through this usage error; that help stays as it is.
_HELP_ERRORS = tuple(getattr(click.exceptions, n) for n in ("NoArgsIsHelpError",)
                     if hasattr(click.exceptions, n))


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, _HELP_ERRORS):
        return exc
    one = _OneLineUsageError(exc.message, exc.ctx)
    one.format_message = exc.format_message  # keep BadParameter's "Invalid value for ..." text
    return one


class _DseGroup(click.Group):
    """A click group that loads its commands on demand and turns user errors into one clear
    line and exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(info.name for info in pkgutil.iter_modules(__path__)
                      if not info.name.startswith("_") and info.name not in _NOT_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.list_commands(ctx):
            return None
        return importlib.import_module(f"{__name__}.{name}").command

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN001, ANN201
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            one = _one_line(exc)
            if one is exc:
                raise
            raise one from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DseError as exc:
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)  # always one line
            ctx.exit(2)
        except click.UsageError as exc:
            one = _one_line(exc)
            if one is exc or isinstance(exc, _OneLineUsageError):
                raise
            raise one from None


@click.group(cls=_DseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dse")
def cli() -> None:
    """Hardware-aware design-space exploration for early-exit CNNs."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="dse", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

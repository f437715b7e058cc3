"""Shared terminal output: one console, a standard progress bar, clean error exits."""

from __future__ import annotations

import errno

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from foramflow.errors import ForamflowError

console = Console(stderr=True)

#: OSErrors that say what is wrong with the user's disk or paths, not with foramflow.
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR", "EEXIST")
    if hasattr(errno, name)
)


def progress_bar(*extra_columns) -> Progress:
    """A progress bar with count, elapsed time, ETA and any extra columns."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=console,
    )


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error as one line, without a traceback, and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def error_message(err: BaseException) -> str | None:
    """The one-line message for an error the user can act on; None for a bug."""
    if isinstance(err, ForamflowError):
        return str(err)
    if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
        names = [str(name) for name in (err.filename, err.filename2) if name is not None]
        reason = err.strerror or str(err)
        return f"{' → '.join(names)}: {reason}" if names else reason
    return None


class ErrorReportingGroup(TyperGroup):
    """The root command: a user's error becomes one ``error:`` line and exit status 2.

    Anything else is a bug and keeps its traceback; ``--debug`` keeps it for every error.
    Catching here, around every subcommand, serves the console script and the test runner
    alike.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as err:
            message = error_message(err)
            if message is None or ctx.params.get("debug"):
                raise
            raise fail(message) from err

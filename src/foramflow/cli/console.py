"""Shared terminal output: one console, a standard progress bar, clean error exits."""

from __future__ import annotations

import errno
import re

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
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from foramflow.errors import ForamflowError
from foramflow.extras import missing_extra

console = Console(stderr=True)

#: OSErrors that say what is wrong with the user's disk or paths, not with foramflow.
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR", "EEXIST")
    if hasattr(errno, name)
)


def progress_bar(*extra_columns, out: Console | None = None) -> Progress:
    """A progress bar with count, elapsed time, ETA and any extra columns."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=out or console,
    )


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error as one line, without a traceback, and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


#: Characters that would break a line of tab-separated output, or cannot be printed.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def tsv_row(*fields: object) -> str:
    """Fields joined by tabs, each one's control characters written as escapes (\\n, \\t,
    \\x1b…): a file name cannot add a line or a column to the output, nor stop it printing."""
    return "\t".join(_UNPRINTABLE.sub(_escape, str(field)) for field in fields)


class _RichTask:
    def __init__(self, owner: RichProgress, task_id):
        self._owner, self._id = owner, task_id

    def advance(self, n: int = 1, **fields: str) -> None:
        self._owner.bars.update(self._id, advance=n, **fields)

    def update(
        self, *, total: int | None = None, completed: int | None = None, **fields: str
    ) -> None:
        self._owner.bars.update(self._id, total=total, completed=completed, **fields)

    def done(self) -> None:
        self._owner.finish(self._id)


class RichProgress:
    """The library's progress reports drawn as rich bars (see :mod:`foramflow.progress`).

    ``fields`` names the extra values a bar shows (``loss``, ``acc``…); a bar's fields
    that a task does not set are left blank.
    """

    def __init__(self, out: Console | None = None, *, fields: tuple[str, ...] = ()):
        self.console = out or console
        self.fields = fields
        self.bars: Progress | None = None

    def message(self, text: str, *, warning: bool = False) -> None:
        self.console.print(text, style="yellow" if warning else None, soft_wrap=True, markup=False)

    def task(self, description: str, total: int | None, **fields: str) -> _RichTask:
        if self.bars is None:
            names = tuple(dict.fromkeys((*self.fields, *fields)))
            columns = [TextColumn(f"{name} {{task.fields[{name}]}}") for name in names]
            self.bars = progress_bar(*columns, out=self.console)
            self.bars.start()
            self._names = names
        blank = {name: "" for name in self._names}
        return _RichTask(self, self.bars.add_task(description, total=total, **(blank | fields)))

    def finish(self, task_id) -> None:
        self.bars.remove_task(task_id)
        if not self.bars.tasks:
            self.bars.stop()
            self.bars = None


def error_message(err: BaseException) -> str | None:
    """The one-line message for an error the user can act on; None for a bug."""
    if isinstance(err, ForamflowError):
        return str(err)
    if isinstance(err, ModuleNotFoundError):
        return missing_extra(err)
    if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
        names = [str(name) for name in (err.filename, err.filename2) if name is not None]
        reason = err.strerror or str(err)
        return f"{' → '.join(names)}: {reason}" if names else reason
    return None


def usage_message(err: UsageError) -> str:
    """A refused command line as one line: the command, then what is wrong with it."""
    where = f"{err.ctx.command_path}: " if err.ctx is not None else ""
    message = " ".join(err.format_message().split()).replace("Value error, ", "")
    return where + message


class ErrorReportingGroup(TyperGroup):
    """The root command: a user's error becomes one ``error:`` line and exit status 2.

    A refused option or argument is a user's error too, reported the same way. Anything
    else is a bug and keeps its traceback; ``--debug`` keeps it for every error. Catching
    here, around every subcommand, serves the console script and the test runner alike.
    """

    def main(self, args=None, prog_name=None, *rest, **options):
        """The command's name is foramflow however it is started (``python -m foramflow``)."""
        return super().main(args, prog_name or "foramflow", *rest, **options)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except UsageError as err:
            if ctx.params.get("debug"):
                raise
            raise fail(usage_message(err)) from err
        except Exception as err:
            message = error_message(err)
            if message is None or ctx.params.get("debug"):
                raise
            raise fail(message) from err

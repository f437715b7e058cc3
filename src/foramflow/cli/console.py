"""Shared terminal output: one console, a standard progress bar, clean error exits."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


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
    """Print an error without a traceback and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


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
            self.bars = progress_bar(*columns)
            self.bars.start()
            self._names = names
        blank = {name: "" for name in self._names}
        return _RichTask(self, self.bars.add_task(description, total=total, **(blank | fields)))

    def finish(self, task_id) -> None:
        self.bars.remove_task(task_id)
        if not self.bars.tasks:
            self.bars.stop()
            self.bars = None

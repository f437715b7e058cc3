"""How long work reports on itself, without the library knowing about terminals.

Library steps take a ``progress`` object and call :meth:`Progress.message` and
:meth:`Progress.task`; the command line passes one that draws rich progress bars
(:class:`foramflow.cli.console.RichProgress`), Python users get :class:`Quiet`, which sends
messages to the ``foramflow`` logger, or write their own (a notebook widget, a web page).
"""

from __future__ import annotations

import logging
from typing import Protocol

logger = logging.getLogger("foramflow")


class Task(Protocol):
    """One piece of work with a known number of steps."""

    def advance(self, n: int = 1, **fields: str) -> None: ...

    def update(
        self, *, total: int | None = None, completed: int | None = None, **fields: str
    ) -> None: ...

    def done(self) -> None: ...


class Progress(Protocol):
    """Where a step reports messages and the progress of its tasks."""

    def message(self, text: str, *, warning: bool = False) -> None: ...

    def task(self, description: str, total: int | None, **fields: str) -> Task:
        """A task of ``total`` steps (None: not known yet)."""
        ...


class _QuietTask:
    def advance(self, n: int = 1, **fields: str) -> None:
        pass

    def update(
        self, *, total: int | None = None, completed: int | None = None, **fields: str
    ) -> None:
        pass

    def done(self) -> None:
        pass


class Quiet:
    """No bars; messages go to the ``foramflow`` logger (warnings as warnings)."""

    def message(self, text: str, *, warning: bool = False) -> None:
        logger.log(logging.WARNING if warning else logging.INFO, text)

    def task(self, description: str, total: int | None, **fields: str) -> Task:
        return _QuietTask()


class Recorded(Quiet):
    """Keeps every message in :attr:`messages` (a notebook's log, a test's evidence)."""

    def __init__(self):
        self.messages: list[str] = []

    def message(self, text: str, *, warning: bool = False) -> None:
        self.messages.append(text)
        super().message(text, warning=warning)

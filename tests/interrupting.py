"""A progress object that stops a step as Ctrl-C would, for tests of resuming."""

from __future__ import annotations

from foramflow.progress import Recorded


class _Task:
    def __init__(self, owner: InterruptAt):
        self.owner = owner

    def advance(self, n: int = 1, **fields: str) -> None:
        self.owner.advances.append(n)
        if len(self.owner.advances) == self.owner.at:
            raise KeyboardInterrupt

    def update(self, *, total=None, completed=None, **fields: str) -> None:
        pass

    def done(self) -> None:
        pass


class InterruptAt(Recorded):
    """Keeps the messages, and raises KeyboardInterrupt at the ``at``-th advance of a task."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at
        self.advances: list[int] = []

    def task(self, description: str, total: int | None, **fields: str) -> _Task:
        return _Task(self)

"""Validators shared by every command that takes the same kind of option.

An option's value is checked where the command line is parsed, before any work starts, by
the same rule in every command that has it: a refusal names the option and is one line.
Checks import what they need when they run, so that ``foramflow --help`` stays fast.
"""

from __future__ import annotations

import math
import re

import typer

#: Integer ranges, given to ``typer.Option`` as ``**SEED``: seeds fit NumPy's and torch's.
SEED = {"min": 0, "max": 2**32 - 1}
WORKERS = {"min": 0}
COUNT = {"min": 1}
PORT = {"min": 1, "max": 65535}


class Finite:
    """A finite float (no nan, no inf) within optional bounds; ``gt``/``lt`` exclude theirs.

    Its :meth:`check` is the option's callback: it sees the value as a float already.
    """

    def __init__(
        self,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
    ):
        given = ((">=", ge), (">", gt), ("<=", le), ("<", lt))
        self.bounds = [(op, bound) for op, bound in given if bound is not None]

    def check(self, value: float | None) -> float | None:
        if value is None:
            return None
        if not math.isfinite(value):
            raise typer.BadParameter(f"{value} is not a finite number")
        for op, bound in self.bounds:
            if not _COMPARE[op](value, bound):
                raise typer.BadParameter(f"{value:g} is out of range: it must be {self.range}")
        return value

    @property
    def range(self) -> str:
        return " and ".join(f"{op} {bound:g}" for op, bound in self.bounds) or "finite"


_COMPARE = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}


def finite(*names: str, default: object = Ellipsis, help: str, **bounds: float):
    """A float option of finite values within ``bounds`` (ge, gt, le, lt); leave ``default``
    out inside ``Annotated``, where the function's signature gives it."""
    first = () if default is Ellipsis else (default,)
    return typer.Option(*first, *names, help=help, callback=Finite(**bounds).check)


class Regex:
    """A regular expression, compiled at parse time; ``groups`` is the fewest it must have."""

    def __init__(self, groups: int = 0):
        self.groups = groups

    def check(self, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as err:
            raise typer.BadParameter(f"{value!r} is not a regular expression: {err}") from None
        if compiled.groups < self.groups:
            raise typer.BadParameter(f"{value!r} has no group (…) to capture")
        return value


class Threshold:
    """The unsure rule's threshold: in (0.5, 1.0], or 0 to switch the rule off."""

    def check(self, value: float | None) -> float | None:
        from foramflow.bundle.schema import threshold_problem

        value = Finite().check(value)
        problem = None if value is None else threshold_problem(value)
        if problem:
            raise typer.BadParameter(problem)
        return value


class Device:
    """auto, cpu, cuda, cuda:N or mps, checked against the devices this machine has."""

    def check(self, value: str | None) -> str | None:
        if value in (None, "auto", "cpu"):
            return value
        match = re.fullmatch(r"cuda(?::(\d+))?", value)
        if not (match or value == "mps"):
            raise typer.BadParameter(f"{value!r}: choose auto, cpu, cuda, cuda:N or mps")
        import torch

        if value == "mps":
            if not torch.backends.mps.is_available():
                raise typer.BadParameter("'mps': this machine has no Apple GPU")
            return value
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise typer.BadParameter(f"{value!r}: this machine has no CUDA GPU; use cpu or auto")
        index = int(match.group(1) or 0)
        if index >= count:
            raise typer.BadParameter(
                f"{value!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
        return value

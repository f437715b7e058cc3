"""Every option of every command, given wrong values, is refused before any work starts.

The sweep reads the command tree: each option's and argument's type says which wrong
values to try (numbers: negative, zero, huge, nan, inf, a word; paths: missing, a file for
a folder and a folder for a file; choices: a word not among them; regular expressions: an
unbalanced bracket; devices: one this machine lacks). Every invocation must end in one
``error:`` line, never a traceback. A value that is wrong whatever else is given must be
refused naming its option; the others may be refused later (the sweep gives no other
arguments, so the command stops at the first one missing).
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from foramflow.cli import app, options
from foramflow.errors import ForamflowError

HUGE_INT = "1" + "0" * 30
STOPPED = "the sweep stops here"


@dataclass(frozen=True)
class Case:
    command: tuple[str, ...]
    param: str
    names: tuple[str, ...]  # how the error may name the parameter
    args: tuple[str, ...]
    refused: bool  # wrong whatever else is given: must be refused naming the parameter

    def __str__(self):
        return " ".join((*self.command, *self.args))


def leaf_commands(command, path=()):
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield path, command
        return
    for name, sub in subcommands.items():
        yield from leaf_commands(sub, (*path, name))


def base_type(annotation):
    """The value's type, without Optional, list or Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return base_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return base_type(next(a for a in typing.get_args(annotation) if a is not type(None)))
    if origin is list:
        return base_type(typing.get_args(annotation)[0])
    return annotation


#: Paths relative to the folder each invocation runs in, made afresh for it.
PLACES = {"missing": "missing", "file": "a-file", "folder": "folder"}


def fresh_folder(parent: Path, number: int) -> Path:
    """A folder holding a file and an empty folder, as every invocation first sees them."""
    folder = parent / str(number)
    (folder / PLACES["folder"]).mkdir(parents=True)
    (folder / PLACES["file"]).write_text("not what any command wants")
    return folder


def wrong_values(param, places: dict[str, str]):
    """(value, refused whatever else is given) pairs for a parameter, by its declared type."""
    info = param.type_descriptor.parameter_info
    kind = base_type(param.type_descriptor.annotation)
    check = getattr(info.callback, "__self__", None)
    if kind in (int, float):
        yield from [("nan", True), ("inf", True), ("a-word", True), ("-1", True), ("0", False)]
        yield (HUGE_INT if kind is int else "1e300"), False
    elif typing.get_origin(kind) is typing.Literal or (
        isinstance(kind, type) and issubclass(kind, enum.Enum)
    ):
        yield "no-such-choice", True
    elif kind is Path:
        yield str(places["missing"]), bool(info.exists)
        yield str(places["file"]), info.file_okay is False
        yield str(places["folder"]), info.dir_okay is False
    elif isinstance(check, options.Regex):
        yield "(", True
    elif isinstance(check, options.Device):
        yield from [("cuda:99", True), ("gpu", True)]
    elif info.callback is not None:
        yield "no-such-value", True
    else:
        yield "no-such-value", False


def sweep_cases(places: dict[str, str] = PLACES) -> list[Case]:
    root = typer.main.get_command(app)
    cases = []
    for path, command in leaf_commands(root):
        arguments = [p for p in command.params if not p.opts[0].startswith("-")]
        for param in command.params:
            if getattr(param, "is_flag", False) or param.name == "help":
                continue
            is_option = param.opts[0].startswith("-")
            if is_option:
                before = ()
            else:  # the arguments before it, as folders that exist
                before = (places["folder"],) * arguments.index(param)
            names = tuple(param.opts) if is_option else (param.name,)
            for value, refused in wrong_values(param, places):
                given = (param.opts[0], value) if is_option else (*before, value)
                cases.append(Case(path, param.name, names, given, refused))
    return cases


@pytest.fixture
def no_work(monkeypatch):
    """Commands that need no input would start real work on a value they accept: stop them
    where the work would begin (the synthetic data sets, the demo, the label web server)."""

    def stop(*args, **kwargs):
        raise ForamflowError(STOPPED)

    import foramflow.cli.label_commands
    import foramflow.data.synthetic
    import foramflow.demo

    for name in ("write_training_set", "make_core", "make_slide", "make_zstack"):
        monkeypatch.setattr(foramflow.data.synthetic, name, stop)
    monkeypatch.setattr(foramflow.demo, "run_demo", stop)
    monkeypatch.setattr(foramflow.cli.label_commands, "_serve", stop)


def test_every_wrong_option_is_one_error_line(tmp_path, monkeypatch, no_work):
    cases = sweep_cases()
    assert len({c.command for c in cases}) >= 19 and len(cases) > 300
    runner = CliRunner()
    problems = []
    for number, case in enumerate(cases):
        monkeypatch.chdir(fresh_folder(tmp_path, number))
        result = runner.invoke(app, [*case.command, *case.args])
        lines = result.output.strip().splitlines()
        error = lines[0] if lines else ""
        if "Traceback" in result.output or not isinstance(result.exception, SystemExit):
            problems.append(f"{case}: {result.exception!r}")
        elif STOPPED in result.output:  # accepted, and the work was about to start
            if case.refused:
                problems.append(f"{case}: accepted")
        elif result.exit_code == 0 or len(lines) != 1 or not error.startswith("error: "):
            problems.append(f"{case}: exit {result.exit_code}, {result.output!r}")
        elif case.refused and not any(f"'{name}'" in error for name in case.names):
            problems.append(f"{case}: not refused by name: {error}")
    assert not problems, "\n".join(problems)


def test_the_sweep_knows_the_kinds_of_option():
    """The sweep covers the shared checks: a regex, a device, a threshold, finite floats."""
    by_name = {(c.command, c.args) for c in sweep_cases()}
    assert (("label",), ("--depth-pattern", "(")) in by_name
    assert (("classify",), ("--sample-regex", "(")) in by_name
    assert (("train",), ("--device", "cuda:99")) in by_name
    assert (("predict",), ("--threshold", "nan")) in by_name
    assert (("train",), ("--lr", "inf")) in by_name
    assert (("synth", "core"), ("--seed", "-1")) in by_name

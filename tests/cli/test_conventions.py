"""The command line's conventions: examples in every help, errors left to the root,
``python -m foramflow`` and shell completion."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import typer

import foramflow.cli
from foramflow.cli import app

CLI_SOURCES = sorted(Path(foramflow.cli.__file__).parent.glob("*.py"))


def leaf_commands(command, path=("foramflow",)):
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(path), command
        return
    for name, sub in subcommands.items():
        yield from leaf_commands(sub, (*path, name))


def test_every_command_help_has_an_example_of_itself():
    commands = dict(leaf_commands(typer.main.get_command(app)))
    assert len(commands) >= 19
    missing = [
        path
        for path, command in commands.items()
        if not re.search(rf"^\s*Example: {re.escape(path)} \S", command.help or "", re.MULTILINE)
    ]
    assert not missing, f"no 'Example: <the command> …' paragraph in the help of {missing}"


def caught_names(handler: ast.ExceptHandler) -> set[str]:
    if handler.type is None:
        return {"<bare except>"}
    nodes = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return {ast.unparse(node).rsplit(".", 1)[-1] for node in nodes}


def test_no_command_catches_value_error():
    """A user's error is a ForamflowError, reported by the root; a ValueError is a bug."""
    found = [
        f"{source.name}:{node.lineno}: except {', '.join(sorted(names))}"
        for source in CLI_SOURCES
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ExceptHandler)
        and (names := caught_names(node)) & {"ValueError", "<bare except>"}
    ]
    assert not found, found


def test_the_ast_check_sees_a_caught_value_error():
    tree = ast.parse("try:\n    pass\nexcept (OSError, ValueError):\n    pass\n")
    handler = next(n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler))
    assert caught_names(handler) == {"OSError", "ValueError"}


def run_module(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "foramflow", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_python_dash_m_runs_the_command():
    result = run_module("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("foramflow ")
    refused = run_module("segment", "--pixels-per-mm", "nan")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "error: foramflow segment: Invalid value for '--pixels-per-mm': nan is not a finite number"
    ]


def test_bash_completion_lists_the_subcommands_and_options():
    def complete(words: str) -> list[str]:
        result = run_module(
            _FORAMFLOW_COMPLETE="complete_bash",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split()) - 1),
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("foramflow cla") == ["classify"]
    assert {"calibrate", "classify", "train", "synth", "label-export"} <= set(
        complete("foramflow ''")
    )
    assert "--lr" in complete("foramflow train --l")

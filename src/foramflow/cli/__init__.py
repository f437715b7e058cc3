"""The ``foramflow`` command: one subcommand per step of the method.

Each subcommand lives in its own module and is a thin layer over a library function.
Command modules import heavy libraries (torch, dask, …) inside the command body so that
``foramflow --help`` and ``foramflow predict`` stay fast and torch-free.
"""

import typer

from foramflow.cli.console import ErrorReportingGroup
from foramflow.version import __version__

app = typer.Typer(
    name="foramflow",
    cls=ErrorReportingGroup,
    help="Foraminifera images to down-core abundances: stack, segment, label, train, "
    "classify, and count.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"foramflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of every error, not one line."
    ),
) -> None:
    """Foraminifera images to down-core abundances."""


# -- commands: one line per subcommand (keep this block sorted by workflow order) --
from foramflow.cli import imaging_commands  # noqa: E402

app.command("stack")(imaging_commands.stack)
app.command("segment")(imaging_commands.segment)
from foramflow.cli import train_commands  # noqa: E402

app.command("train")(train_commands.train)
app.command("evaluate")(train_commands.evaluate)
app.command("export")(train_commands.export)
app.command("predict")(train_commands.predict)
from foramflow.cli import ensemble_commands  # noqa: E402

app.command("ensemble")(ensemble_commands.ensemble)
from foramflow.cli import similar_commands  # noqa: E402

app.command("similar")(similar_commands.similar)
from foramflow.cli import synthetic_commands  # noqa: E402

app.add_typer(synthetic_commands.app, name="synth")
from foramflow.cli import label_commands  # noqa: E402

app.command("label")(label_commands.label)
app.command("label-predict")(label_commands.label_predict)
app.command("label-export")(label_commands.label_export)
from foramflow.cli import classify_commands  # noqa: E402

app.command("classify")(classify_commands.classify)
from foramflow.cli import abundance_commands  # noqa: E402

app.command("calibrate")(abundance_commands.calibrate)
app.command("abundance")(abundance_commands.abundance)
from foramflow.cli import demo_commands  # noqa: E402

app.command("demo")(demo_commands.demo)
# -- end of commands --


def main() -> None:
    app()

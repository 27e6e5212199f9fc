"""The Typer application and the two consoles every command prints through."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from trainlab import __version__
from trainlab.redaction import redact

app = typer.Typer(
    name="trainlab",
    help="Train image classifiers and manage the experiments around them.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# wide enough for the tables when output goes to a file or CI log (Rich assumes 80 there)
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


def _version(value: bool) -> None:
    if value:
        console.print(f"trainlab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Train image classifiers and manage the experiments around them."""
    from dotenv import load_dotenv


    # WANDB_API_KEY and friends; variables already set in the environment win
    load_dotenv(Path.cwd() / ".env", override=False)
    # the command line is parsed already; W&B records sys.argv with the run, so it gets the masked copy
    sys.argv[:] = [redact(arg) for arg in sys.argv]

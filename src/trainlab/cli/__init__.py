"""The `trainlab` command: one module per command group, each thin over the library.

    app.py         the Typer app, the consoles, --version, .env loading
    common.py      shared options, one-line errors and exit codes, config loading
    progress.py    download bars, training progress (bar on a terminal, plain lines in logs)
    training.py    download, train (--resume), all
    evaluation.py  test, predict
    runs.py        runs, runs show (--group with confidence intervals)
    compare.py     compare
    report.py      report
    reproduce.py   reproduce
    models.py      register, models (the MLflow Model Registry), serve (MLflow's scoring server on a model)
    sweep.py       sweep, sweep show
    ui.py          ui

The only package that prints or reads argv. Heavy libraries (torch, MLflow) are
imported inside the commands, so `trainlab --help` stays fast.
"""

from __future__ import annotations

import gc

from trainlab.cli import compare, evaluation, models, report, reproduce, runs, sweep, training, ui  # noqa: F401,I001  (registers the commands, in --help order)
from trainlab.cli.app import app


def main() -> None:
    import logging

    # a library's log file on a full disk: Python's logging prints '--- Logging error ---' and a traceback per
    # record unless told not to (its documented switch for production); the error that matters is said once
    logging.raiseExceptions = False
    import warnings

    # requests asks urllib3 for SOCKS proxies on import and urllib3 warns that PySocks is missing; whether it shows
    # depended on which thread imported MLflow first. trainlab uses no SOCKS proxy: the line is noise
    warnings.filterwarnings("ignore", message="SOCKS support in urllib3 requires")
    try:
        app()
    finally:
        # the interpreter's last garbage collection walks every object torch, MLflow and scikit-learn
        # created: 2 s on a small CPU between the last line and the prompt, for memory the OS frees anyway
        gc.freeze()


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()

"""The ``genreg`` command line (also ``python -m genreg_core``): one module per command group."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from genreg_core.cli.args import ArgumentParser
from genreg_core.cli.curate import add_curate_command
from genreg_core.cli.generate import add_generate_commands
from genreg_core.cli.grid import add_grid_command
from genreg_core.cli.measure import add_measure_commands
from genreg_core.cli.models import add_model_commands
from genreg_core.cli.runs import add_run_commands
from genreg_core.library_log import silence_library_logs


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="genreg", description="genreg: a lab for generative data augmentation and "
                                     "feature regularization (also: python -m genreg_core).")
    sub = parser.add_subparsers(dest="command", required=True)
    add_model_commands(sub)
    add_generate_commands(sub)
    add_measure_commands(sub)
    add_run_commands(sub)
    add_grid_command(sub)
    add_curate_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a bad value or an expected failure prints one line and returns 2."""
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")  # read when diffusers is imported: no library warnings
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    silence_library_logs()
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # it logs a traceback for a locked store
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its one-line error (or the help)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"genreg: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2

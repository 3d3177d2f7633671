"""The ``ivcontrast`` command: one entry point, one subcommand per job.

Each subcommand lives in ``ivcontrast.commands.<module>`` and provides
``add_arguments(parser)`` and ``run(args, settings) -> int``. Only the chosen
subcommand's module is imported, so ``ivcontrast series`` never loads PyTorch.

Flags that override a setting use a dotted ``dest`` (``dest="scp.port"``); every such
flag given on the command line wins over the TOML file and the environment.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ivcontrast import __version__
from ivcontrast.commands import CommandError
from ivcontrast.config import SettingsError, load_settings
from ivcontrast.logs import configure_logging

log = logging.getLogger(__name__)

# name -> (module under ivcontrast.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "run the node: DICOM listener + worker (+ web app)"),
    "scp": ("scp", "run the DICOM listener only (C-ECHO, C-STORE)"),
    "worker": ("worker", "run the completion sweep and the job worker only"),
    "series": ("series", "list received series with their state and skip reasons"),
    "db": ("db", "database maintenance: upgrade the schema"),
    "classify": ("classify", "classify DICOM folders, files, NIfTI or NRRD offline"),
    "results": ("results", "query classification results"),
    "train": ("train", "train or fine-tune a contrast model on labelled CT"),
    "evaluate": ("evaluate", "evaluate a model package on labelled CT"),
    "export": ("export", "export a training checkpoint as a model package"),
    "synth": ("synth", "write synthetic CT phantom series"),
    "send": ("send", "send DICOM files to any AE (C-STORE SCU)"),
    "writeback": ("writeback", "list or retry write-back jobs"),
    "web": ("web", "run the HTTP API and dashboard only"),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s own arguments are loaded."""
    parser = argparse.ArgumentParser(
        prog="ivcontrast",
        description="Detect intravenous contrast in CT series received over DICOM.",
    )
    parser.add_argument("--version", action="version", version=f"ivcontrast {__version__}")
    parser.add_argument("-c", "--config", help="TOML settings file (default: $IVCONTRAST_CONFIG)")
    parser.add_argument("--data-dir", dest="data_dir", default=None, help="data directory")
    parser.add_argument("--database-url", dest="database_url", default=None, help="SQLAlchemy URL")
    parser.add_argument(
        "--log-level", dest="log_level", default=None, help="DEBUG, INFO, WARNING, ERROR"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting by its dotted name, e.g. --set worker.quiet_seconds=30",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(f"ivcontrast.commands.{module}").add_arguments(sp)
    return parser


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted settings keys from flags given on the command line and from --set."""
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SettingsError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = value
    for key, value in vars(args).items():
        if value is not None and ("." in key or key in ("data_dir", "database_url", "log_level")):
            overrides[key] = value
    return overrides


def _chosen_command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if arg in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_command(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        settings = load_settings(args.config, overrides=settings_overrides(args))
    except SettingsError as exc:
        print(f"ivcontrast: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    module = importlib.import_module(f"ivcontrast.commands.{COMMANDS[args.command][0]}")
    try:
        return int(module.run(args, settings))
    except KeyboardInterrupt:
        log.info("interrupted")
        return 130
    except CommandError as exc:
        print(f"ivcontrast {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

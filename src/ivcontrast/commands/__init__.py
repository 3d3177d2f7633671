"""Subcommands of ``ivcontrast``: the application layer over scp, worker, web, training, synth.

Each module provides ``add_arguments(parser)`` and ``run(args, settings) -> int``.
Heavy imports (torch, onnxruntime, pynetdicom) stay inside ``run`` so that the CLI
starts fast and a command loads only what it uses.
"""

from __future__ import annotations

from pathlib import Path


class CommandError(Exception):
    """A user-facing failure: the message names the file or value and the reason."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def model_package(text: str) -> Path:
    """An argparse type: a model package folder, or ``default`` for the bundled model."""
    from ivcontrast.classifier.package import resolve_package_path

    return resolve_package_path(None if text == "default" else Path(text))

"""Subcommands of ``ivcontrast``: the application layer over scp, worker, web, training, synth.

Each module provides ``add_arguments(parser)`` and ``run(args, settings) -> int``.
Heavy imports (torch, onnxruntime, pynetdicom) stay inside ``run`` so that the CLI
starts fast and a command loads only what it uses.
"""


class CommandError(Exception):
    """A user-facing failure: the message names the file or value and the reason."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

"""``ivcontrast scp``: the DICOM listener alone (C-ECHO, C-STORE into the spool and store)."""

from __future__ import annotations

import argparse

from ivcontrast.commands import CommandError
from ivcontrast.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", dest="scp.port", type=int, default=None, help="DICOM port")
    parser.add_argument("--aet", dest="scp.ae_title", default=None, help="our AE title")
    parser.add_argument("--bind", dest="scp.bind_address", default=None, help="address to bind")
    parser.add_argument(
        "--processes",
        dest="scp.processes",
        type=int,
        default=None,
        help="listener processes sharing the port (0 = one per CPU core)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ivcontrast.logs import configure_logging
    from ivcontrast.scp.supervisor import ListenerService

    service = ListenerService(settings, configure_logging=configure_logging)
    try:
        service.run_forever()
    except (OSError, ValueError, RuntimeError) as exc:
        raise CommandError(f"{settings.scp.bind_address}:{settings.scp.port}: {exc}") from None
    return 0

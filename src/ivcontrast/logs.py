"""Log handlers, configured by entry points only (library modules just get a logger).

Child processes (the listener's) call ``configure_logging`` again with the same settings,
since a spawned process starts with no handlers.

Messages carry bytes a peer chose (AE titles, UIDs, pydicom's warnings about them), so every
message is written with its control and other unprintable characters escaped (``\\x1b``,
``\\n``): a peer cannot colour or rewrite a terminal, or forge a log line. Python warnings
(pydicom's among them) go through logging, never raw to stderr. A connection that fails in
its TLS handshake or at the socket is one line (:func:`connection_failure`), not a traceback.
"""

from __future__ import annotations

import json
import logging
import ssl
import sys
import warnings

from ivcontrast.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
# Libraries that narrate routine work at INFO (every PDU, every migration plugin, every
# standard table loaded): their chatter is kept for DEBUG.
CHATTY = ("pynetdicom", "alembic", "highdicom", "uvicorn.access")


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with every unprintable character written as ``\\n``, ``\\xNN`` or ``\\uNNNN``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def _escape_char(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def connection_failure(exc: BaseException) -> str:
    """One line for a connection that failed at the socket or in TLS (its handshake).

    Callers log it without ``exc_info``: these are the network's doing, not a bug, and a
    scanner or a client with the wrong certificate would otherwise fill the log.
    """
    if isinstance(exc, ssl.SSLError):
        what = f"TLS: {getattr(exc, 'reason', None) or exc.strerror or exc}"
    elif isinstance(exc, TimeoutError | ConnectionError):
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        what = f"{type(exc).__name__}: {exc}"
    return escape(what)


class TextFormatter(logging.Formatter):
    """The text format, with the message escaped (tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers; ``extra`` fields such as series_uid kept."""

    STANDARD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "process": record.processName,
            "logger": record.name,
            "message": escape(record.getMessage()),
        }
        entry.update(
            {k: v for k, v in vars(record).items() if k not in self.STANDARD and k != "message"}
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else TextFormatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    # Warnings as "py.warnings" records, escaped like the rest. Off first: captureWarnings(True)
    # does nothing while logging believes it already captures, even where warnings.showwarning
    # has since been put back (a catch_warnings block exited, as around each pytest test), and
    # warnings would then reach stderr raw.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    # pydicom logs each of its warnings to the "pydicom" logger as well as warning it: keep
    # the log record only. ("ignore" also keeps the warning out of the module's registry,
    # which would otherwise grow by one entry per distinct hostile value.)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    if settings.log_level != "DEBUG":
        for name in CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)

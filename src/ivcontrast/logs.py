"""Log handlers, configured by entry points only (library modules just get a logger).

Child processes (the listener's) call ``configure_logging`` again with the same settings,
since a spawned process starts with no handlers.
"""

from __future__ import annotations

import json
import logging
import sys

from ivcontrast.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
# Libraries that narrate routine work at INFO (every PDU, every migration plugin, every
# standard table loaded): their chatter is kept for DEBUG.
CHATTY = ("pynetdicom", "alembic", "highdicom", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers; ``extra`` fields such as series_uid kept."""

    STANDARD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "process": record.processName,
            "logger": record.name,
            "message": record.getMessage(),
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
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    if settings.log_level != "DEBUG":
        for name in CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)

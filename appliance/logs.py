"""Logs as logfmt: one `key=value` line per record on stderr (the journal under systemd)."""
from __future__ import annotations

import logging
import sys
import time


def _value(text: str) -> str:
    """Bare when it can be; quoted (with escapes) when it has spaces, quotes, = or is empty."""
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        pairs = [("ts", ts), ("level", record.levelname.lower()), ("logger", record.name),
                 ("msg", record.getMessage())]
        if record.exc_info:
            pairs.append(("exc", self.formatException(record.exc_info)))
        return " ".join(f"{key}={_value(value)}" for key, value in pairs)


def configure(level: str) -> None:
    """Route every record at `level` and above to stderr as logfmt, replacing earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

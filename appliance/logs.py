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


class Throttle:
    """At most one log line per key per `interval` seconds (a flood of bad requests is one line
    per period, not one per request). Call it per occurrence: None means stay quiet, else the
    number of occurrences held back since the last line."""

    def __init__(self, interval: float = 10.0, clock=time.monotonic, max_keys: int = 1024):
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self._last: dict[str, tuple[float, int]] = {}  # key -> (time of the last line, held back since)

    def __call__(self, key: str) -> int | None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval:
            self._last[key] = (last[0], last[1] + 1)
            return None
        if last is None and len(self._last) >= self.max_keys:
            self._last.clear()  # bounded; forgetting only makes the next lines come sooner
        self._last[key] = (now, 0)
        return last[1] if last is not None else 0

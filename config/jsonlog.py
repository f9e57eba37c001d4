"""Log records as one JSON object per line, with the request they belong to.

Operators read logs with tools that parse lines, so a traceback must not be spread over many
lines: it is one field of its record. Each line has the time (UTC, ISO 8601), the level, the
logger, the message, the request id and the user id when the record was written while a request
was being served, and the event's own fields: whatever a caller passes as
``extra={"event": "...", ...}`` (plain values only; nothing that holds image bytes or secrets).

``RequestContextMiddleware`` (config/middleware.py) sets the request for the current context;
``RequestContextFilter`` copies its id and user onto every record.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from datetime import UTC, datetime

from django.utils.functional import empty

# The request being served in this context (thread or task), for the log filter.
current_request: contextvars.ContextVar = contextvars.ContextVar("current_request", default=None)

# A request id from the proxy is kept when it looks like one (so lines join up across hosts);
# anything else is replaced, so a client cannot write arbitrary text into the logs.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# Attributes every LogRecord has: anything else on a record came from ``extra`` (the event).
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "user_id", "request"}
)


def request_id_for(header: str | None) -> str:
    """The id to log a request under: the proxy's ``X-Request-ID`` if sane, else a new one."""
    if header and REQUEST_ID_PATTERN.match(header):
        return header
    return uuid.uuid4().hex


def user_id_of(request) -> int | None:
    """The id of the request's user if it is already known. Never loads it: a log call must
    not query the database (the database may be what the line is about)."""
    user = getattr(request, "user", None)
    if user is None:
        return None
    if getattr(user, "_wrapped", None) is empty:  # the lazy user has not been loaded yet
        return None
    return user.pk if getattr(user, "is_authenticated", False) else None


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` and ``user_id`` (None outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request.get()
        if request is None:
            # django.request passes the request itself on error records.
            request = getattr(record, "request", None)
        record.request_id = getattr(request, "request_id", None)
        record.user_id = user_id_of(request) if request is not None else None
        return True


def _plain(value):
    """A JSON-safe version of an event field (str() for anything else)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"  # never the bytes themselves
    return str(value)


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks included as a field)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "user_id": getattr(record, "user_id", None),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = _plain(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)

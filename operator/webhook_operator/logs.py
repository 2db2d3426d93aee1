"""Logging: plain text for people, one JSON object per line for log pipelines.

Every attempt is one line with event, subscription, attempt, status code and duration. Nothing
that reaches a log line carries key material: the domain never puts it in messages, and headers
are redacted by name (see `sender.request_headers_for_log`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from webhook_operator.domain.clock import format_time

LOGGER = logging.getLogger("webhook_operator")
_CHATTY_LOGGERS = ("kopf.objects", "httpx")
_FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            # RFC 3339 in UTC with milliseconds: unambiguous for a log pipeline in any time zone.
            "time": format_time(dt.datetime.fromtimestamp(record.created, tz=dt.UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, _FIELDS, {}) or {})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, _FIELDS, None)
        if fields:
            text += "".join(f" {key}={value}" for key, value in fields.items() if value is not None)
        return text


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Unless at DEBUG, quiet two loggers that only repeat our "delivery attempt" line, three lines
    # per event, a tenth of the CPU under load: kopf's "Handler 'event_event' succeeded." per watch
    # event, and httpx's "HTTP Request: POST <url>" per attempt (the full URL may carry a token).
    for chatty in _CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.NOTSET if level <= logging.DEBUG else logging.WARNING)


def log(level: int, message: str, **fields: Any) -> None:
    LOGGER.log(level, message, extra={_FIELDS: fields})

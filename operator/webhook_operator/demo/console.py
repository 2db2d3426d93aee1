"""What the demo prints, and the logging it keeps quiet while it runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TextIO

from webhook_operator.demo.receiver import Arrival

LOG_ENV = "WEBHOOK_OPERATOR_DEMO_LOG"  # e.g. =info or =debug: the operator's own log lines on stderr


class Console:
    """Progress lines with the time since the start, flushed at once (the demo is watched live)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()
        encoding = getattr(out, "encoding", None) or "ascii"
        try:
            "✓✗→…".encode(encoding)
            self.ok, self.bad, self.arrow, self.more = "✓", "✗", "→", "…"
        except (UnicodeEncodeError, LookupError):
            self.ok, self.bad, self.arrow, self.more = "OK", "FAILED", "->", "..."

    def step(self, text: str) -> None:
        self.line(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def arrival(self, arrival: Arrival, event_name: str) -> None:
        if arrival.verified is None:
            check = "unsigned"
        elif arrival.verified:
            check = f"signature verified {self.ok}"
        else:
            check = f"signature INVALID {self.bad} ({arrival.problem})"
        answer = f"{arrival.answered}" + (
            " (scripted outage: will be retried)" if arrival.answered == 503 else ""
        )
        what = f"{event_name} ({arrival.event_type})"
        self.line(
            f"[{arrival.at - self.started:5.1f}s]   {what:<42} {self.arrow} {arrival.subscription:<20} "
            f"attempt {arrival.attempt}  webhook-id {arrival.webhook_id[:8]}{self.more}  "
            f"{check}  {self.arrow} {answer}"
        )


def configure_logging(level_name: str | None) -> Callable[[], None]:
    """Quiet by default: the demo prints what happens; kopf's and the operator's lines on request.

    Returns a function that puts the logging configuration back as it was.
    """
    from webhook_operator import logs

    root = logging.getLogger()
    quieted = ("kopf", "webhook_operator", "aiohttp")
    saved = (list(root.handlers), root.level, [logging.getLogger(name).level for name in quieted])
    level = getattr(logging, level_name.upper(), None) if level_name else None
    logs.configure("text", level if isinstance(level, int) else logging.WARNING)
    for handler in root.handlers:
        handler.addFilter(_expected_notices)
    if not isinstance(level, int):
        logging.getLogger("kopf").setLevel(logging.WARNING)
        # The operator logs each failed attempt as a warning; the demo shows those itself.
        logging.getLogger("webhook_operator").setLevel(logging.ERROR)
        logging.getLogger("aiohttp").setLevel(logging.ERROR)

    def restore() -> None:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, old_level in zip(quieted, saved[2], strict=True):
            logging.getLogger(name).setLevel(old_level)

    return restore


def _expected_notices(record: logging.LogRecord) -> bool:
    """Drop kopf's notice that it runs outside the main thread: the demo does that on purpose."""
    return not (record.name.startswith("kopf") and "running not in the main thread" in record.getMessage())

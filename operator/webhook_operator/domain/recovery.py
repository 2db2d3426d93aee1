"""Bulk recovery: a subscription's `recover-since` annotation puts its failed deliveries back.

`webhooks.openplatform.dev/recover-since: "<RFC 3339 time>"` on a subscription means: every
Failed delivery to it, of an event created at or after that time, starts over (Pending, a fresh
attempt budget, reason `Recovered`). It is acted on once per new value; the subscription's
`status.recovery` records which value, when, and how many deliveries it put back.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from webhook_operator.domain.clock import format_time
from webhook_operator.domain.deliveries import Delivery, State

RECOVER_SINCE_ANNOTATION = "webhooks.openplatform.dev/recover-since"
RECOVERED = "Recovered"
# RFC 3339 date-time: a full date, a time, and an offset (Z or +hh:mm); fractions allowed.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
)


@dataclass(frozen=True)
class RecoveryRequest:
    value: str  # the annotation as written: compared with status.recovery.since
    since: dt.datetime | None  # None when the value is not an RFC 3339 time
    problem: str | None = None


def pending_request(annotation: str | None, status: Mapping[str, Any]) -> RecoveryRequest | None:
    """The recovery to carry out: the annotation's value when it differs from the last acted on."""
    if annotation is None:
        return None
    done = status.get("recovery")
    if isinstance(done, Mapping) and done.get("since") == annotation:
        return None
    since = parse_rfc3339(annotation)
    if since is None:
        return RecoveryRequest(
            annotation,
            None,
            f"annotation {RECOVER_SINCE_ANNOTATION} is {annotation[:64]!r}, not an RFC 3339 time "
            '(for example "2026-01-31T09:00:00Z"); nothing was recovered',
        )
    return RecoveryRequest(annotation, since)


def parse_rfc3339(value: str) -> dt.datetime | None:
    text = value.strip()
    if not _RFC3339.fullmatch(text):
        return None
    text = text.replace("z", "Z").replace("t", "T").replace(" ", "T").replace("Z", "+00:00")
    # Python before 3.11 took at most 6 fractional digits; Kubernetes writes none or 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:  # 2026-02-30 and the like
        return None


def recover_failed(deliveries: Iterable[Delivery], subscription: str) -> tuple[tuple[Delivery, ...], int]:
    """The deliveries with the Failed one to `subscription` started over, and how many that was."""
    recovered = 0
    result = []
    for delivery in deliveries:
        if delivery.subscription == subscription and delivery.state is State.FAILED:
            delivery = replace(
                delivery, state=State.PENDING, attempts=0, reason=RECOVERED, next_attempt_time=None
            )
            recovered += 1
        result.append(delivery)
    return tuple(result), recovered


def recovery_status(request: RecoveryRequest, *, redelivered: int, now: dt.datetime) -> dict[str, Any]:
    status: dict[str, Any] = {
        "since": request.value,
        "appliedTime": format_time(now),
        "redelivered": redelivered,
    }
    if request.problem is not None:
        status["message"] = request.problem
    return status

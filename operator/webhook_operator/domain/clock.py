"""Time in the shapes Kubernetes and the wire use: RFC 3339 in status, Unix seconds in headers."""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC


def utcnow() -> dt.datetime:
    return dt.datetime.now(tz=UTC)


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 with a `Z`, as the Kubernetes API writes `metav1.Time` (millisecond precision kept)."""
    moment = moment.astimezone(UTC).replace(tzinfo=None)  # isoformat is several times cheaper than strftime
    # Decide on the milliseconds shown, not the microseconds held: 12:00:00.000400 written as
    # "12:00:00.000Z" would read back as 12:00:00 and be rendered "12:00:00Z", so a restarted
    # operator re-rendering a finished event's status would find it changed and write it again.
    millis = moment.microsecond // 1000
    return moment.isoformat(timespec="milliseconds" if millis else "seconds") + "Z"


def parse_time(value: object) -> dt.datetime | None:
    """The inverse of `format_time`; None for anything that is not a timestamp (never raises)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

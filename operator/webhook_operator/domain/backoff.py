"""When to try again: exponential or linear backoff with jitter, and `Retry-After`."""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass
from typing import Literal

Backoff = Literal["Exponential", "Linear"]

# The spread of the jitter around the nominal delay: +/-10 % keeps successive gaps growing
# (a doubling can never be undone by it) while still de-synchronising a herd of retries.
JITTER_SPREAD = 0.2


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff: Backoff = "Exponential"
    initial_delay: float = 5.0
    max_delay: float = 3600.0


def retry_delay(policy: RetryPolicy, attempts_made: int, jitter: float) -> float:
    """Seconds to wait after the `attempts_made`-th failed attempt.

    Exponential: initial * 2^(n-1); Linear: initial * n; both capped by `max_delay`.
    `jitter` is a number in [0, 1) supplied by the caller (random in production, fixed in tests).
    """
    n = max(1, attempts_made)
    if policy.backoff == "Linear":
        nominal = policy.initial_delay * n
    else:
        nominal = policy.initial_delay * 2.0 ** min(n - 1, 62)
    capped = min(nominal, policy.max_delay)
    return max(0.0, min(capped * (1.0 + JITTER_SPREAD * (jitter - 0.5)), policy.max_delay))


def parse_retry_after(value: str | None, *, now: dt.datetime) -> float | None:
    """Seconds asked for by a `Retry-After` header (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also takes "²" and "١٢٠"; RFC 9110 DIGIT is ASCII
        return float(min(int(value), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def next_delay(policy: RetryPolicy, attempts_made: int, jitter: float, retry_after: float | None) -> float:
    """The backoff delay, stretched to honour `Retry-After` but never beyond `max_delay`."""
    delay = retry_delay(policy, attempts_made, jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay))
    return delay

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


# The retry schedule Standard Webhooks recommends: the delay before each attempt after the first
# (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h), so ten attempts over ~75.5 hours.
STANDARD_WEBHOOKS_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


@dataclass(frozen=True)
class RetryPolicy:
    """How a delivery is retried. The defaults are what `retry: {}` means (the CRD's field defaults);
    a subscription without `retry` gets `DEFAULT_RETRY`."""

    max_attempts: int = 8
    backoff: Backoff = "Exponential"
    initial_delay: float = 5.0
    max_delay: float = 3600.0
    # Fixed delays before attempts 2, 3, ...; when set, backoff/initial_delay are not used.
    schedule: tuple[float, ...] = ()


DEFAULT_RETRY = RetryPolicy(
    max_attempts=len(STANDARD_WEBHOOKS_SCHEDULE) + 1,
    max_delay=max(STANDARD_WEBHOOKS_SCHEDULE),
    schedule=STANDARD_WEBHOOKS_SCHEDULE,
)


def retry_delay(policy: RetryPolicy, attempts_made: int, jitter: float) -> float:
    """Seconds to wait after the `attempts_made`-th failed attempt.

    Exponential: initial * 2^(n-1); Linear: initial * n; a schedule: its n-th entry (its last one
    beyond its end); all capped by `max_delay`.
    `jitter` is a number in [0, 1) supplied by the caller (random in production, fixed in tests).
    """
    n = max(1, attempts_made)
    if policy.schedule:
        nominal = policy.schedule[min(n, len(policy.schedule)) - 1]
    elif policy.backoff == "Linear":
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

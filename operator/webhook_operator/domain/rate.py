"""A token bucket per subscription: `requestsPerSecond` tokens a second, at most `burst` saved up.

Reservations, as Go's `rate.Limiter.Reserve`: a delivery that finds no token takes the next
one that will come (the bucket goes below zero) and is told how long to wait for it; it is
then sent at that time without asking again. So deliveries waiting for tokens are sent in the
order they asked, each waits once (one status write, not one per poll), and a reservation not
used is given back. Pure: time is passed in (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

RATE_LIMITED = "RateLimited"


@dataclass(frozen=True)
class RateLimit:
    requests_per_second: float
    burst: int = 1


@dataclass(frozen=True)
class Bucket:
    limit: RateLimit
    tokens: float  # below zero: reserved ahead
    at: float  # when `tokens` was counted

    @classmethod
    def full(cls, limit: RateLimit, now: float) -> Bucket:
        return cls(limit, float(limit.burst), now)

    def _refilled(self, now: float) -> float:
        elapsed = max(0.0, now - self.at)
        return min(float(self.limit.burst), self.tokens + elapsed * self.limit.requests_per_second)


def reserve(bucket: Bucket, now: float) -> tuple[Bucket, float]:
    """Take a token; returns the bucket after and how many seconds to wait for it (0: at once)."""
    tokens = bucket._refilled(now) - 1.0
    wait = 0.0 if tokens >= 0 else -tokens / bucket.limit.requests_per_second
    return replace(bucket, tokens=tokens, at=now), wait


def give_back(bucket: Bucket, now: float) -> Bucket:
    """A reserved or taken token that was not used for a request."""
    return replace(bucket, tokens=min(float(bucket.limit.burst), bucket._refilled(now) + 1.0), at=now)

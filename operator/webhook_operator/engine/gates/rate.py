"""A rate limit per subscription (`spec.rateLimit`): a token bucket (domain/rate.py) beside
`maxInFlight`. Every attempt takes a token, retries and probes included; a retry's own time
(its backoff, or the receiver's Retry-After) comes first, and the token is taken when it is due.

A delivery that finds no token reserves the next one and is deferred to its time (reason
RateLimited, one status write), then sent without asking again. A reservation is given back
when its event finishes or goes away first, or when a later gate refuses the attempt.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from webhook_operator.domain.apply import Deferral
from webhook_operator.domain.clock import utcnow
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.rate import RATE_LIMITED, Bucket, RateLimit, give_back, reserve
from webhook_operator.domain.specs import SubscriptionSpec
from webhook_operator.engine.gates.base import Gate, Refusal
from webhook_operator.engine.subscriptions import SubscriptionState

# A reservation this close to its time is used at once (the work queue wakes a little late
# or early; a deferral of a few milliseconds would cost a status write for nothing).
_SLACK_SECONDS = 0.005
# A reservation not used within this long after its time lapses (its delivery was held by
# something else meanwhile: a pause, a circuit); it reserves anew. Without it, every delivery
# of a subscription paused for a while would find its token long due and all go out at once.
_LAPSE_SECONDS = 1.0


class RateGate(Gate):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[SubscriptionKey, Bucket] = {}
        self._reserved: dict[SubscriptionKey, dict[EventKey, float]] = {}  # when each may send
        self._reserving: dict[EventKey, set[SubscriptionKey]] = {}

    async def admit(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec
    ) -> Refusal | None:
        limit = spec.rate_limit
        if limit is None:
            return None
        sub, now = subscription.record.key, self._clock()
        bucket = self._bucket(sub, limit, now)
        reservations = self._reserved.setdefault(sub, {})
        at = reservations.get(event)
        if at is not None and now - at > _LAPSE_SECONDS:
            self._drop(sub, event)
            at = None
        if at is None:
            bucket, wait = reserve(bucket, now)
            self._buckets[sub] = bucket
            if wait <= _SLACK_SECONDS:
                return None
            at = reservations[event] = now + wait
            self._reserving.setdefault(event, set()).add(sub)
        if at - now <= _SLACK_SECONDS:
            self._drop(sub, event)
            return None
        return Refusal(Deferral(RATE_LIMITED, utcnow() + dt.timedelta(seconds=at - now)))

    def release(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec, *, sent: bool
    ) -> None:
        sub = subscription.record.key
        if not sent and sub in self._buckets:
            self._buckets[sub] = give_back(self._buckets[sub], self._clock())

    def forget_event(self, event: EventKey) -> None:
        for sub in self._reserving.get(event, set()).copy():
            self._drop(sub, event)
            if sub in self._buckets:
                self._buckets[sub] = give_back(self._buckets[sub], self._clock())

    def _drop(self, sub: SubscriptionKey, event: EventKey) -> None:
        reservations = self._reserved.get(sub, {})
        reservations.pop(event, None)
        if not reservations:
            self._reserved.pop(sub, None)
        subs = self._reserving.get(event, set())
        subs.discard(sub)
        if not subs:
            self._reserving.pop(event, None)

    def forget_subscription(self, subscription: SubscriptionKey) -> None:
        self._buckets.pop(subscription, None)
        for event in list(self._reserved.get(subscription, {})):
            self._drop(subscription, event)

    def _bucket(self, sub: SubscriptionKey, limit: RateLimit, now: float) -> Bucket:
        bucket = self._buckets.get(sub)
        if bucket is None or bucket.limit != limit:
            # A new or changed limit starts full; reservations made under the old one are dropped
            # (their deliveries ask again when their time comes).
            bucket = self._buckets[sub] = Bucket.full(limit, now)
            for event in list(self._reserved.get(sub, {})):
                self._drop(sub, event)
        return bucket

"""At most `maxInFlight` requests to one endpoint at a time (engine/limiter.py).

A slot that cannot be had within a short wait is not waited for: the delivery is deferred by a
second (reason MaxInFlight) and its event's worker moves on, so a saturated endpoint never holds
a worker that other events need.
"""

from __future__ import annotations

import datetime as dt

from webhook_operator.domain.apply import Deferral
from webhook_operator.domain.clock import utcnow
from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.domain.specs import SubscriptionSpec
from webhook_operator.engine.gates.base import Gate, Refusal
from webhook_operator.engine.limiter import InFlightLimiter
from webhook_operator.engine.subscriptions import SubscriptionState

MAX_IN_FLIGHT = "MaxInFlight"
DEFER_SECONDS = 1.0


class InFlightGate(Gate):
    def __init__(self, limiter: InFlightLimiter, *, slot_wait: float) -> None:
        self._limiter = limiter
        self._slot_wait = slot_wait

    async def admit(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec
    ) -> Refusal | None:
        if await self._limiter.acquire(subscription.record.key, spec.max_in_flight, wait=self._slot_wait):
            return None
        return Refusal(Deferral(MAX_IN_FLIGHT, utcnow() + dt.timedelta(seconds=DEFER_SECONDS)))

    def release(
        self, event: EventKey, subscription: SubscriptionState, spec: SubscriptionSpec, *, sent: bool
    ) -> None:
        self._limiter.release(subscription.record.key, spec.max_in_flight)

    def forget_subscription(self, subscription: SubscriptionKey) -> None:
        self._limiter.forget(subscription)

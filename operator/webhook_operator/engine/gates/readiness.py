"""The subscription's own state holds its deliveries: paused, a Secret missing or invalid, the
endpoint disabled after sustained failure (domain/readiness.py says which, in which order)."""

from __future__ import annotations

from webhook_operator.domain.deliveries import Blocker
from webhook_operator.domain.keys import EventKey
from webhook_operator.engine.gates.base import Gate
from webhook_operator.engine.subscriptions import SubscriptionState


class ReadinessGate(Gate):
    def hold(self, event: EventKey, subscription: SubscriptionState) -> Blocker | None:
        return subscription.readiness.blocker

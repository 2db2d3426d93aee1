"""Which events have an open delivery to which subscription, and how many deliveries are pending.

A delivery that waits (paused, a circuit open, a Secret missing) has no timer: its event is
found here and woken when the subscription changes. The events open per subscription feed the
`webhook_deliveries_pending` gauge (labelled by namespace and subscription, for the alerts); a
subscription with none left has no series, so deleted ones leave nothing behind.
"""

from __future__ import annotations

from collections.abc import Collection

from webhook_operator.domain.keys import EventKey, SubscriptionKey
from webhook_operator.metrics import Metrics


class WaitingIndex:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._waiting: dict[SubscriptionKey, set[EventKey]] = {}
        self._waiting_on: dict[EventKey, set[SubscriptionKey]] = {}
        self._pending: dict[EventKey, int] = {}

    @property
    def event_count(self) -> int:
        """Events with an open delivery (held in memory for wake-ups)."""
        return len(self._waiting_on)

    @property
    def pending_event_count(self) -> int:
        return len(self._pending)

    def waiting(self, sub: SubscriptionKey) -> Collection[EventKey]:
        """The events with an open delivery to this subscription."""
        return self._waiting.get(sub, ())

    def set(self, key: EventKey, subs: set[SubscriptionKey], pending: int) -> None:
        """The event's open deliveries now go to `subs`; `pending` of them are not final."""
        before = self._waiting_on.pop(key, set())
        for sub in before - subs:
            waiting = self._waiting.get(sub)
            if waiting is not None:
                waiting.discard(key)
                if not waiting:
                    del self._waiting[sub]
                    self._metrics.pending.remove(*sub)
                else:
                    self._metrics.pending.labels(*sub).set(len(waiting))
        if subs:
            self._waiting_on[key] = subs
            for sub in subs - before:
                waiting = self._waiting.setdefault(sub, set())
                waiting.add(key)
                self._metrics.pending.labels(*sub).set(len(waiting))
        if pending:
            self._pending[key] = pending
        else:
            self._pending.pop(key, None)

    def forget(self, key: EventKey) -> None:
        self.set(key, set(), 0)

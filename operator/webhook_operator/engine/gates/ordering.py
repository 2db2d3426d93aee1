"""Ordering per key: for a `PerKey` subscription, an event's delivery waits while an event with
the same `orderingKey` created earlier (domain/ordering.py says what "earlier" is) has a delivery
to that subscription that is not final (reason WaitingForPredecessor).

What is held, and why, is recovered from what the API server holds: the events' creation
order and their deliveries' states come from their bodies, kept current by the event store
(after a restart, by its LIST). Until the first LIST of a namespace's events is complete, a
later page may still bring an earlier event, so a PerKey delivery waits for it too.

A held delivery has no timer: when an event's delivery to a subscription becomes final (or the
event is deleted, or matches without that subscription), the earliest event of the key that
still holds deliveries to it is woken, and only that one. The cost when a key's head is
retrying: every later event of that key waits (for that subscription) as long as the head does,
up to the head's retry policy; a Failed head is final and releases them.
"""

from __future__ import annotations

import bisect
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

from webhook_operator.domain.deliveries import OPEN_STATES, Blocker, State
from webhook_operator.domain.keys import EventKey
from webhook_operator.domain.ordering import WAITING_FOR_PREDECESSOR, Link, first_holder, position
from webhook_operator.domain.specs import SubscriptionSpec
from webhook_operator.engine.gates.base import Gate
from webhook_operator.engine.subscriptions import SubscriptionState

Chain = tuple[str, str]  # (namespace, orderingKey)


class OrderingGate(Gate):
    def __init__(self, wake: Callable[[EventKey], None]) -> None:
        self._wake = wake
        self._links: dict[EventKey, tuple[Chain, Link]] = {}
        self._chains: dict[Chain, list[Link]] = {}  # sorted by position
        self._listed: set[str | None] = set()  # scopes (namespace patterns; None: all) listed once

    @property
    def tracked(self) -> int:
        return len(self._links)

    def listed(self, scope: str | None) -> None:
        """The first complete LIST of a scope's events is in: what waited for it is woken."""
        if scope in self._listed:
            return
        self._listed.add(scope)
        for key in list(self._links):
            if scope is None or fnmatch.fnmatchcase(key.namespace, scope):
                self._wake(key)

    def observe(self, key: EventKey, body: Mapping[str, Any] | None) -> None:
        """The event store's listener: the event's latest body, or None once finished or gone."""
        link = _link(body) if body is not None else None
        chain = _chain(key, body) if body is not None else None
        old = self._links.get(key)
        if old is not None and link is not None and old[1] == link:
            return
        if old is not None:
            self._chains[old[0]].remove(old[1])
            if not self._chains[old[0]]:
                del self._chains[old[0]]
        if link is not None and chain is not None:
            self._links[key] = (chain, link)
            bisect.insort(self._chains.setdefault(chain, []), link, key=lambda item: item.position)
        else:
            self._links.pop(key, None)
        if old is not None:
            self._released(key.namespace, old[0], old[1], link)

    def hold(self, event: EventKey, subscription: SubscriptionState) -> Blocker | None:
        spec = subscription.record.spec
        if not isinstance(spec, SubscriptionSpec) or spec.ordering != "PerKey":
            return None
        known = self._links.get(event)
        if known is None:
            return None  # no orderingKey: not ordered
        chain, me = known
        if not self._is_listed(event.namespace):
            return Blocker(
                WAITING_FOR_PREDECESSOR,
                "waiting for the operator to list the namespace's events, to know which came first",
            )
        name = subscription.record.name
        before = first_holder(self._chains.get(chain, ()), name, before=me.position)
        if before is None:
            return None
        what = "is not matched yet" if before.open is None else f"to {name} is not final yet"
        return Blocker(
            WAITING_FOR_PREDECESSOR,
            f"event {before.name} (orderingKey {chain[1]!r}) was created earlier and its delivery {what}",
        )

    def _is_listed(self, namespace: str) -> bool:
        return any(scope is None or fnmatch.fnmatchcase(namespace, scope) for scope in self._listed)

    def _released(self, namespace: str, chain_id: Chain, old: Link, new: Link | None) -> None:
        """Wake, for each subscription `old` held and `new` no longer does, the key's new head."""
        chain = self._chains.get(chain_id, [])
        now_open = new.open if new is not None else frozenset()
        if now_open is None:
            return  # still holds every subscription (not matched yet)
        woken: set[str] = set()
        if old.open is not None:
            released = old.open - now_open
        else:  # it was not matched yet: whatever later events wait on, it no longer holds
            released = frozenset(
                name for link in chain if link.open is not None for name in link.open if name not in now_open
            )
            # A later event not matched yet waits on any subscription, and may be planning right
            # now against `old` as it was: wake the first such, or it records a hold that nothing
            # lifts (the fault the ordering test found: the head failed while the next was written).
            unmatched = next((link for link in chain if link.open is None and link.name != old.name), None)
            if unmatched is not None:
                woken.add(unmatched.name)
                self._wake(EventKey(namespace, unmatched.name))
        for subscription in released:
            head = first_holder(chain, subscription)
            if head is not None and head.name != old.name and head.name not in woken:
                woken.add(head.name)
                self._wake(EventKey(namespace, head.name))


def _chain(key: EventKey, body: Mapping[str, Any]) -> Chain | None:
    spec = body.get("spec")
    ordering_key = spec.get("orderingKey") if isinstance(spec, Mapping) else None
    if not isinstance(ordering_key, str) or not ordering_key:
        return None
    return (key.namespace, ordering_key)


def _link(body: Mapping[str, Any]) -> Link | None:
    spec = body.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("orderingKey"), str):
        return None
    where = position(body)
    if where is None:
        return None
    return Link(where.name, where, _open_deliveries(body))


def _open_deliveries(body: Mapping[str, Any]) -> frozenset[str] | None:
    status = body.get("status")
    raw = status.get("deliveries") if isinstance(status, Mapping) else None
    if not isinstance(raw, list):
        failed = isinstance(status, Mapping) and status.get("failed") is not None
        # Never matched: it may match any subscription. One that failed before matching
        # (its own spec unusable) holds nothing.
        return frozenset() if failed else None
    names = set()
    for item in raw:
        if isinstance(item, Mapping) and isinstance(item.get("subscription"), str):
            state = item.get("state", State.PENDING.value)
            if state in {s.value for s in OPEN_STATES}:
                names.add(item["subscription"])
    return frozenset(names)

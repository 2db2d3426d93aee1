"""Endpoint health per subscription, aggregated in memory between status flushes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from webhook_operator.domain.health import (
    Disabled,
    DisableRules,
    EndpointHealth,
    disable_verdict,
    record_attempt,
)
from webhook_operator.domain.keys import SubscriptionKey
from webhook_operator.domain.outcomes import Verdict


@dataclass
class Tracked:
    uid: str
    health: EndpointHealth
    egress_refusal: str | None = None
    last_flush: float = float("-inf")  # monotonic time of the last status write


class HealthTracker:
    def __init__(self, rules: DisableRules) -> None:
        self._rules = rules
        self._tracked: dict[SubscriptionKey, Tracked] = {}

    def __len__(self) -> int:
        return len(self._tracked)

    def ensure(self, key: SubscriptionKey, uid: str, status: Mapping[str, Any]) -> Tracked:
        """The tracked health, seeded from the status on first sight (or after re-creation)."""
        tracked = self._tracked.get(key)
        if tracked is None or tracked.uid != uid:
            tracked = Tracked(uid=uid, health=EndpointHealth.from_status(status))
            self._tracked[key] = tracked
        return tracked

    def get(self, key: SubscriptionKey) -> Tracked | None:
        return self._tracked.get(key)

    def record(
        self,
        key: SubscriptionKey,
        verdict: Verdict,
        *,
        now: dt.datetime,
        delivery_failed: bool,
        generation: int,
        egress_refusal: str | None,
    ) -> Disabled | None:
        """Account one attempt; returns the Disabled state when this attempt disabled the endpoint."""
        tracked = self._tracked.get(key)
        if tracked is None:
            return None
        was_disabled = tracked.health.disabled
        health = record_attempt(tracked.health, verdict, now=now, delivery_failed=delivery_failed)
        disabled = disable_verdict(health, verdict, now=now, generation=generation, rules=self._rules)
        tracked.health = replace(health, disabled=disabled)
        if verdict is Verdict.SUCCESS:
            tracked.egress_refusal = None
        elif egress_refusal is not None:
            tracked.egress_refusal = egress_refusal
        return disabled if disabled is not None and was_disabled is None else None

    def reenable(self, key: SubscriptionKey) -> None:
        tracked = self._tracked.get(key)
        if tracked is not None:
            tracked.health = replace(
                tracked.health, disabled=None, consecutive_failures=0, failing_since=None
            )
            tracked.egress_refusal = None

    def forget(self, key: SubscriptionKey) -> None:
        self._tracked.pop(key, None)

"""Endpoint health: lifetime counts, the current failure streak, and when to disable an endpoint.

Aggregated in memory per subscription and flushed to its status every few seconds, so a burst
to one endpoint costs a handful of status writes, not one per delivery.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from webhook_operator.domain.clock import format_time, parse_time
from webhook_operator.domain.outcomes import Verdict


@dataclass(frozen=True)
class DisableRules:
    """Disable an endpoint after this many failed attempts in a row, or after failing this long."""

    max_consecutive_failures: int = 1000
    max_failing_seconds: float = 24 * 3600.0


@dataclass(frozen=True)
class Disabled:
    reason: str  # Gone | SustainedFailure
    message: str
    since: dt.datetime
    generation: int

    def to_status(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "message": self.message,
            "since": format_time(self.since),
            "generation": self.generation,
        }


@dataclass(frozen=True)
class EndpointHealth:
    delivered: int = 0
    failed: int = 0
    consecutive_failures: int = 0
    failing_since: dt.datetime | None = None
    last_delivery: dt.datetime | None = None
    last_success: dt.datetime | None = None
    disabled: Disabled | None = None

    @classmethod
    def from_status(cls, status: object) -> EndpointHealth:
        status = status if isinstance(status, dict) else {}
        disabled = status.get("endpointDisabled")
        parsed_disabled = None
        if isinstance(disabled, dict):
            parsed_disabled = Disabled(
                reason=str(disabled.get("reason", "SustainedFailure")),
                message=str(disabled.get("message", "")),
                since=parse_time(disabled.get("since")) or dt.datetime.fromtimestamp(0, dt.UTC),
                generation=_int(disabled.get("generation")),
            )
        return cls(
            delivered=_int(status.get("deliveredCount")),
            failed=_int(status.get("failedCount")),
            consecutive_failures=_int(status.get("consecutiveFailures")),
            failing_since=parse_time(status.get("failingSince")),
            last_delivery=parse_time(status.get("lastDeliveryTime")),
            last_success=parse_time(status.get("lastSuccessTime")),
            disabled=parsed_disabled,
        )

    def to_status(self) -> dict[str, Any]:
        """The status fields this owns; None values delete the field in a merge patch."""
        return {
            "deliveredCount": self.delivered,
            "failedCount": self.failed,
            "consecutiveFailures": self.consecutive_failures,
            "failingSince": format_time(self.failing_since) if self.failing_since else None,
            "lastDeliveryTime": format_time(self.last_delivery) if self.last_delivery else None,
            "lastSuccessTime": format_time(self.last_success) if self.last_success else None,
            "endpointDisabled": self.disabled.to_status() if self.disabled else None,
        }


def record_attempt(
    health: EndpointHealth, verdict: Verdict, *, now: dt.datetime, delivery_failed: bool
) -> EndpointHealth:
    """Account one attempt; `delivery_failed` when it ended its delivery as Failed."""
    if verdict is Verdict.SUCCESS:
        return replace(
            health,
            delivered=health.delivered + 1,
            consecutive_failures=0,
            failing_since=None,
            last_delivery=now,
            last_success=now,
        )
    return replace(
        health,
        failed=health.failed + (1 if delivery_failed else 0),
        consecutive_failures=health.consecutive_failures + 1,
        failing_since=health.failing_since or now,
        last_delivery=now,
    )


def disable_verdict(
    health: EndpointHealth, verdict: Verdict, *, now: dt.datetime, generation: int, rules: DisableRules
) -> Disabled | None:
    """Whether this attempt's outcome disables the endpoint (None: keep delivering)."""
    if health.disabled is not None:
        return health.disabled
    if verdict is Verdict.GONE:
        return Disabled("Gone", "the endpoint answered 410 Gone", now, generation)
    if verdict is Verdict.SUCCESS or health.consecutive_failures == 0:
        return None
    if health.consecutive_failures >= rules.max_consecutive_failures:
        return Disabled(
            "SustainedFailure",
            f"{health.consecutive_failures} attempts in a row failed",
            now,
            generation,
        )
    if health.failing_since and (now - health.failing_since).total_seconds() >= rules.max_failing_seconds:
        return Disabled(
            "SustainedFailure",
            f"every attempt failed since {format_time(health.failing_since)}",
            now,
            generation,
        )
    return None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0

"""Typed results for publishers: what was published, and where its deliveries stand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["Delivered", "Failed", "Pending"]
DeliveryState = Literal["Pending", "InFlight", "Retrying", "Succeeded", "Failed"]


@dataclass(frozen=True)
class PublishedEvent:
    """A WebhookEvent that exists. `uid` is the `webhook-id` its receivers see.

    `created` is False when the event was already there: published before with the same key (this
    call was a no-op), or created by this call's own first request whose answer was lost.
    """

    name: str
    namespace: str
    uid: str
    created: bool


@dataclass(frozen=True)
class DeliveryStatus:
    subscription: str
    state: DeliveryState
    attempts: int
    last_status_code: int | None
    last_error: str | None
    reason: str | None


@dataclass(frozen=True)
class EventStatus:
    """An event's status as the operator last wrote it.

    `outcome` is Delivered once every matched delivery succeeded (or none matched), Failed once
    any delivery failed for good, Pending before either; `reason` and `message` are those of the
    condition that decided it.
    """

    name: str
    namespace: str
    uid: str
    outcome: Outcome
    reason: str | None
    message: str | None
    deliveries: tuple[DeliveryStatus, ...]
    succeeded: int
    failed: int
    pending: int

    @property
    def finished(self) -> bool:
        return self.outcome != "Pending"


def event_status(obj: Mapping[str, Any]) -> EventStatus:
    """Parse a WebhookEvent object as the API server returns it."""
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
    outcome: Outcome = "Pending"
    deciding = conditions.get("Delivered")
    if _true(conditions.get("Failed")):
        outcome, deciding = "Failed", conditions["Failed"]
    elif _true(conditions.get("Delivered")):
        outcome = "Delivered"
    return EventStatus(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        uid=str(metadata.get("uid", "")),
        outcome=outcome,
        reason=deciding.get("reason") if deciding else None,
        message=deciding.get("message") if deciding else None,
        deliveries=tuple(_delivery(d) for d in status.get("deliveries") or [] if isinstance(d, Mapping)),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        pending=int(status.get("pending") or 0),
    )


def _true(condition: Mapping[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def _delivery(entry: Mapping[str, Any]) -> DeliveryStatus:
    code = entry.get("lastStatusCode")
    return DeliveryStatus(
        subscription=str(entry.get("subscription", "")),
        state=entry.get("state", "Pending"),
        attempts=int(entry.get("attempts") or 0),
        last_status_code=int(code) if isinstance(code, int) else None,
        last_error=entry.get("lastError") or None,
        reason=entry.get("reason") or None,
    )

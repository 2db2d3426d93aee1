"""The delivery state machine of one event: one `Delivery` per matched subscription.

Pure: a reconcile plans which deliveries are due, the edges attempt them, and the results are
applied here. Everything a restarted operator needs (attempts, next attempt time) is in the
`Delivery`, which is stored in the event's status.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from webhook_operator.domain.backoff import RetryPolicy, next_delay, retry_delay
from webhook_operator.domain.clock import format_time, parse_time
from webhook_operator.domain.filters import FilterError, FilterInput, FilterVerdict, evaluate
from webhook_operator.domain.matching import type_matches
from webhook_operator.domain.outcomes import AttemptResult, Verdict
from webhook_operator.domain.specs import EventSpec, SubscriptionSpec

MAX_ERROR_LENGTH = 256


class State(enum.StrEnum):
    PENDING = "Pending"
    IN_FLIGHT = "InFlight"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


OPEN_STATES = frozenset({State.PENDING, State.IN_FLIGHT, State.RETRYING})


@dataclass(frozen=True)
class Delivery:
    subscription: str
    state: State = State.PENDING
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    reason: str | None = None
    last_attempt_time: dt.datetime | None = None
    next_attempt_time: dt.datetime | None = None
    succeeded_time: dt.datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def to_status(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "subscription": self.subscription,
            "state": self.state.value,
            "attempts": self.attempts,
            "lastStatusCode": self.last_status_code,
            "lastError": self.last_error,
            "reason": self.reason,
            "lastAttemptTime": _time(self.last_attempt_time),
            "nextAttemptTime": _time(self.next_attempt_time),
            "succeededTime": _time(self.succeeded_time),
        }
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_status(cls, raw: object) -> Delivery | None:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("subscription"), str):
            return None
        try:
            state = State(raw.get("state", "Pending"))
        except ValueError:
            state = State.PENDING
        code = raw.get("lastStatusCode")
        attempts = raw.get("attempts")
        return cls(
            subscription=raw["subscription"],
            state=state,
            attempts=attempts if isinstance(attempts, int) else 0,
            last_status_code=code if isinstance(code, int) else None,
            last_error=_text(raw.get("lastError")),
            reason=_text(raw.get("reason")),
            last_attempt_time=parse_time(raw.get("lastAttemptTime")),
            next_attempt_time=parse_time(raw.get("nextAttemptTime")),
            succeeded_time=parse_time(raw.get("succeededTime")),
        )


@dataclass(frozen=True)
class Blocker:
    """Why a subscription cannot take deliveries right now; its deliveries wait, they are not dropped."""

    reason: str
    message: str
    # True: a delivery waits only as long as its retry policy would have kept it trying (the
    # open circuit: the endpoint is down, not the subscription); then it fails with this reason.
    gives_up: bool = False


@dataclass(frozen=True)
class Target:
    """A subscription as the planner sees it: its parsed spec (None when invalid) and any blocker."""

    name: str
    spec: SubscriptionSpec | None
    blocker: Blocker | None = None


@dataclass(frozen=True)
class Plan:
    deliveries: tuple[Delivery, ...]
    due: tuple[str, ...]


def match_targets(
    event: EventSpec,
    targets: Iterable[Target],
    on_filtered: Callable[[str, FilterVerdict], None] | None = None,
) -> tuple[Delivery, ...]:
    """The deliveries of a newly seen event: every subscription whose types (and name, if listed)
    match and whose payload filter, if any, holds. A filter that fails on this event gives a
    delivery that is Failed at once, reason FilterError: the event is not silently dropped.
    `on_filtered(subscription, verdict)` hears of every filter evaluated (for metrics)."""
    wanted = set(event.subscriptions) if event.subscriptions is not None else None
    variables = FilterInput(event.type, event.source, event.data)  # converted once, if any filter runs
    deliveries = []
    for target in sorted(targets, key=lambda t: t.name):
        spec = target.spec
        if spec is None or (wanted is not None and target.name not in wanted):
            continue
        if not type_matches(spec.event_types, event.type):
            continue
        verdict = evaluate(spec.filter, variables) if spec.filter is not None else True
        if spec.filter is not None and on_filtered is not None:
            on_filtered(target.name, verdict)
        if isinstance(verdict, FilterError):
            deliveries.append(
                Delivery(target.name, State.FAILED, reason="FilterError", last_error=_short(verdict.message))
            )
        elif verdict:
            deliveries.append(Delivery(subscription=target.name))
    return tuple(deliveries)


def plan_attempts(deliveries: Iterable[Delivery], targets: Mapping[str, Target], now: dt.datetime) -> Plan:
    """Which open deliveries to attempt now; deliveries to deleted subscriptions end Failed here."""
    planned: list[Delivery] = []
    due: list[str] = []
    for delivery in deliveries:
        if not delivery.is_open:
            planned.append(delivery)
            continue
        target = targets.get(delivery.subscription)
        if target is None:
            planned.append(
                replace(
                    delivery,
                    state=State.FAILED,
                    reason="SubscriptionDeleted",
                    last_error=f"subscription {delivery.subscription!r} was deleted before delivery",
                    next_attempt_time=None,
                )
            )
            continue
        if target.blocker is not None:
            planned.append(_blocked(delivery, target.blocker, target.spec, now))
            continue
        if delivery.reason is not None and delivery.state is State.PENDING:
            delivery = replace(delivery, reason=None)
        planned.append(delivery)
        if delivery.next_attempt_time is None or delivery.next_attempt_time <= now:
            due.append(delivery.subscription)
    return Plan(deliveries=tuple(planned), due=tuple(due))


def _blocked(
    delivery: Delivery, blocker: Blocker, spec: SubscriptionSpec | None, now: dt.datetime
) -> Delivery:
    if not blocker.gives_up or spec is None:
        return replace(delivery, reason=blocker.reason)
    # The time the next attempt was due anchors the deadline (a delivery never tried: now).
    due = delivery.next_attempt_time or now
    if give_up_time(delivery, spec, due) > now:
        return replace(delivery, reason=blocker.reason, next_attempt_time=due)
    return replace(
        delivery,
        state=State.FAILED,
        reason=blocker.reason,
        last_error=_short(f"its retry policy ran out while it waited: {blocker.message}"),
        next_attempt_time=None,
    )


def give_up_time(delivery: Delivery, spec: SubscriptionSpec, due: dt.datetime) -> dt.datetime:
    """The latest a delivery would have failed for good had every remaining attempt failed: its
    next attempt at `due`, then for each further one the policy's backoff (nominal, no jitter)
    and a full `timeoutSeconds` for the attempt before it. Generous on purpose: a held delivery
    must not fail earlier than its own retries could have."""
    policy = spec.retry
    later_attempts = range(delivery.attempts + 1, policy.max_attempts)
    waits = sum(retry_delay(policy, n, 0.5) + spec.timeout for n in later_attempts)
    return due + dt.timedelta(seconds=waits)


def apply_result(
    delivery: Delivery, result: AttemptResult, policy: RetryPolicy, *, now: dt.datetime, jitter: float
) -> Delivery:
    attempts = delivery.attempts + 1
    common = replace(
        delivery,
        attempts=attempts,
        last_status_code=result.status_code,
        last_error=_short(result.error),
        last_attempt_time=now,
        next_attempt_time=None,
    )
    if result.verdict is Verdict.SUCCESS:
        return replace(common, state=State.SUCCEEDED, reason=None, last_error=None, succeeded_time=now)
    if result.verdict is Verdict.GONE:
        return replace(common, state=State.FAILED, reason="Gone")
    if result.verdict is Verdict.FAIL:
        reason = "EgressDenied" if result.egress_refused else "PermanentError"
        return replace(common, state=State.FAILED, reason=reason)
    if attempts >= policy.max_attempts:
        return replace(common, state=State.FAILED, reason="AttemptsExhausted")
    delay = next_delay(policy, attempts, jitter, result.retry_after)
    return replace(
        common,
        state=State.RETRYING,
        reason=None,
        next_attempt_time=now + dt.timedelta(seconds=delay),
    )


def defer(delivery: Delivery, *, now: dt.datetime, seconds: float, reason: str) -> Delivery:
    """Postpone without spending an attempt (e.g. the endpoint's maxInFlight is saturated)."""
    return replace(delivery, reason=reason, next_attempt_time=now + dt.timedelta(seconds=seconds))


def redeliver_failed(deliveries: Iterable[Delivery]) -> tuple[Delivery, ...]:
    """The manual replay: failed deliveries start over, with a fresh attempt budget."""
    return tuple(
        replace(
            delivery,
            state=State.PENDING,
            attempts=0,
            reason="Redelivered",
            next_attempt_time=None,
        )
        if delivery.state is State.FAILED
        else delivery
        for delivery in deliveries
    )


def next_wake(
    deliveries: Iterable[Delivery], targets: Mapping[str, Target], now: dt.datetime
) -> dt.datetime | None:
    """The earliest attempt due among deliveries that are not blocked (`now` for one due at once);
    for one held by an open circuit, its own next attempt time, or once that has passed, the time
    it would give up."""
    times = []
    for delivery in deliveries:
        target = targets.get(delivery.subscription)
        if not delivery.is_open or target is None:
            continue
        if target.blocker is None:
            times.append(delivery.next_attempt_time or now)
        elif target.blocker.gives_up and target.spec is not None:
            # Its own next attempt (to look again then), or its give-up time if that is past.
            due = delivery.next_attempt_time or now
            times.append(due if due > now else give_up_time(delivery, target.spec, due))
    return min(times) if times else None


def _time(moment: dt.datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _short(error: str | None) -> str | None:
    if error is None:
        return None
    return error if len(error) <= MAX_ERROR_LENGTH else error[: MAX_ERROR_LENGTH - 1] + "…"

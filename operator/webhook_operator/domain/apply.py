"""Applying what the attempts of one reconcile did onto the event's deliveries (pure).

The attempts ran against the deliveries the reconcile started from; by the time their results
are written, a write conflict may have brought a newer status (another replica's, a replay),
so each outcome is applied only onto the state it started from: never twice, never onto a
newer one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from webhook_operator.domain.backoff import RetryPolicy
from webhook_operator.domain.deliveries import Delivery, State, Target, apply_result
from webhook_operator.domain.outcomes import AttemptResult


@dataclass(frozen=True)
class Deferral:
    """A delivery that was due but not sent, and until when it waits (no attempt is spent)."""

    reason: str  # e.g. MaxInFlight, RateLimited
    until: dt.datetime


@dataclass(frozen=True)
class Outcome:
    """What one due delivery's turn produced: an attempt's result, or a deferral."""

    attempts_before: int
    at: dt.datetime
    result: AttemptResult | None = None
    jitter: float = 0.5  # for the retry backoff; drawn once, so a re-applied outcome is the same
    deferral: Deferral | None = None

    @property
    def attempted(self) -> bool:
        return self.result is not None


def apply_outcomes(
    started: Iterable[Delivery],
    planned: Iterable[Delivery],
    targets: Mapping[str, Target],
    outcomes: Mapping[str, Outcome],
) -> tuple[Delivery, ...]:
    """The deliveries after the outcomes: `planned` is the plan made now over `started`."""
    before = {delivery.subscription: delivery for delivery in started}
    return tuple(
        _apply(delivery, before[delivery.subscription], targets.get(delivery.subscription), outcome)
        if (outcome := outcomes.get(delivery.subscription)) is not None
        else delivery
        for delivery in planned
    )


def _apply(delivery: Delivery, start: Delivery, target: Target | None, outcome: Outcome) -> Delivery:
    if not start.is_open or start.attempts != outcome.attempts_before:
        return delivery  # made against an older state: that state has moved on
    if outcome.result is None:
        # Not sent: a delivery that ended or is held (paused, ...) meanwhile waits on that instead.
        held = target is not None and target.blocker is not None
        if not delivery.is_open or held or outcome.deferral is None:
            return delivery
        return replace(delivery, reason=outcome.deferral.reason, next_attempt_time=outcome.deferral.until)
    if target is None:
        # Attempted, then its subscription was deleted: the attempt counts and a success stands.
        done = apply_result(start, outcome.result, RetryPolicy(), now=outcome.at, jitter=outcome.jitter)
        if done.state is State.SUCCEEDED:
            return done
        return replace(
            delivery,
            attempts=done.attempts,
            last_status_code=done.last_status_code,
            last_attempt_time=done.last_attempt_time,
        )
    if target.spec is None:
        return delivery
    return apply_result(delivery, outcome.result, target.spec.retry, now=outcome.at, jitter=outcome.jitter)

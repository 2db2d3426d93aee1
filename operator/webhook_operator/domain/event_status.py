"""An event's status from its deliveries: counts, the Delivered and Failed conditions, completion."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook_operator.domain.api import DELIVERY_FAILURE_REASONS, ConditionType, Reason
from webhook_operator.domain.clock import format_time, parse_time
from webhook_operator.domain.conditions import Condition, upsert_condition
from webhook_operator.domain.deliveries import Delivery, State
from webhook_operator.domain.progress import event_progress
from webhook_operator.domain.specs import SpecProblem

DELIVERED = ConditionType.DELIVERED
FAILED = ConditionType.FAILED


@dataclass(frozen=True)
class Summary:
    succeeded: int
    failed: int
    pending: int
    delivered: Condition
    failure: Condition

    @property
    def finished(self) -> bool:
        return self.pending == 0


def summarize(deliveries: Sequence[Delivery]) -> Summary:
    succeeded = sum(1 for d in deliveries if d.state is State.SUCCEEDED)
    failed_ones = [d for d in deliveries if d.state is State.FAILED]
    open_ones = [d for d in deliveries if d.is_open]
    total = len(deliveries)

    if not deliveries:
        delivered = Condition(
            DELIVERED, "True", Reason.NO_SUBSCRIPTIONS, "no subscription matched this event"
        )
    elif not failed_ones and not open_ones:
        delivered = Condition(
            DELIVERED, "True", Reason.ALL_DELIVERED, f"delivered to {total} of {total} subscriptions"
        )
    elif not open_ones:
        delivered = Condition(
            DELIVERED,
            "False",
            Reason.DELIVERY_FAILED,
            f"{succeeded} of {total} delivered; {len(failed_ones)} failed",
        )
    else:
        delivered = Condition(
            DELIVERED, "False", Reason.IN_PROGRESS, _progress_message(succeeded, total, open_ones)
        )

    if failed_ones:
        first = failed_ones[0]
        reason = first.reason if first.reason in DELIVERY_FAILURE_REASONS else Reason.PERMANENT_ERROR
        detail = f": {first.last_error}" if first.last_error else ""
        failure = Condition(
            FAILED,
            "True",
            reason,
            f"{len(failed_ones)} of {total} deliveries failed; {first.subscription} after "
            f"{first.attempts} attempt(s){detail}",
        )
    else:
        failure = Condition(FAILED, "False", Reason.NO_FAILURES, "no delivery has failed")
    return Summary(succeeded, len(failed_ones), len(open_ones), delivered, failure)


def problem_summary(problem: SpecProblem) -> Summary:
    """An event whose own spec is unusable: it fails once, visibly, and is never retried."""
    return Summary(
        0,
        0,
        0,
        Condition(DELIVERED, "False", problem.reason, problem.message),
        Condition(FAILED, "True", problem.reason, problem.message),
    )


def render_status(
    old: Mapping[str, Any],
    deliveries: Sequence[Delivery] | None,
    summary: Summary,
    *,
    now: dt.datetime,
    generation: int,
    redelivered: str | None,
) -> dict[str, Any]:
    """The complete new status (it replaces the old one whole, under a resourceVersion test).

    `deliveries` is None for an event that failed before matching (its own spec is unusable):
    the list stays absent, so a later reconcile re-derives the same verdict instead of reading
    an empty list as "nothing matched".
    """
    existing = old.get("conditions")
    conditions = upsert_condition(
        existing if isinstance(existing, list) else [], summary.delivered, now=now, generation=generation
    )
    conditions = upsert_condition(conditions, summary.failure, now=now, generation=generation)
    for condition in event_progress(summary.delivered, summary.failure, pending=summary.pending):
        conditions = upsert_condition(conditions, condition, now=now, generation=generation)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "pending": summary.pending,
    }
    if deliveries is not None:
        status["deliveries"] = [delivery.to_status() for delivery in deliveries]
    completion = parse_time(old.get("completionTime"))
    if summary.finished:
        status["completionTime"] = format_time(completion or now)
    if redelivered is not None:
        status["redelivered"] = redelivered
    return status


def _progress_message(succeeded: int, total: int, open_ones: Sequence[Delivery]) -> str:
    waiting = [f"{d.subscription}: {d.reason}" for d in open_ones if _held(d)]
    retrying = [d for d in open_ones if d.state is State.RETRYING]
    parts = [f"{succeeded} of {total} delivered"]
    if retrying:
        # Only a backoff says when the next attempt is; a held delivery keeps the time it was
        # due (its retry deadline counts from it), which would read as an attempt in the past.
        backing_off = (d.next_attempt_time for d in retrying if not _held(d) and d.next_attempt_time)
        soonest = min(backing_off, default=None)
        when = f" (next attempt at {format_time(soonest)})" if soonest else ""
        parts.append(f"{len(retrying)} retrying{when}")
    if waiting:
        parts.append("waiting on " + ", ".join(waiting[:3]) + (" …" if len(waiting) > 3 else ""))
    return "; ".join(parts)


def _held(delivery: Delivery) -> bool:
    """Waiting on something other than its own backoff (a pause, a busy or failing endpoint, ...)."""
    return bool(delivery.reason) and delivery.reason != Reason.REDELIVERED

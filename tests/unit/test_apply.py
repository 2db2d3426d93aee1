"""Applying attempt outcomes onto an event's deliveries: pure, no event loop."""

from __future__ import annotations

import datetime as dt

from webhook_operator.domain.apply import Deferral, Outcome, apply_outcomes
from webhook_operator.domain.backoff import RetryPolicy
from webhook_operator.domain.deliveries import Blocker, Delivery, State, Target, plan_attempts
from webhook_operator.domain.outcomes import AttemptResult, Verdict
from webhook_operator.domain.specs import SubscriptionSpec

NOW = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)
SPEC = SubscriptionSpec(url="https://a.example/", retry=RetryPolicy(max_attempts=3, initial_delay=5.0))


def later(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def target(name: str = "a", blocker: Blocker | None = None) -> dict[str, Target]:
    return {name: Target(name, SPEC, blocker)}


def applied(started: list[Delivery], targets: dict[str, Target], outcomes: dict[str, Outcome]) -> Delivery:
    plan = plan_attempts(started, targets, NOW)
    [delivery] = apply_outcomes(started, plan.deliveries, targets, outcomes)
    return delivery


def test_a_success_ends_the_delivery_succeeded() -> None:
    outcome = Outcome(0, NOW, AttemptResult(Verdict.SUCCESS, 200))
    delivery = applied([Delivery("a")], target(), {"a": outcome})
    assert (delivery.state, delivery.attempts, delivery.succeeded_time) == (State.SUCCEEDED, 1, NOW)


def test_a_transient_failure_schedules_a_retry_per_the_policy() -> None:
    outcome = Outcome(0, NOW, AttemptResult(Verdict.RETRY, 503), jitter=0.5)
    delivery = applied([Delivery("a")], target(), {"a": outcome})
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == (State.RETRYING, 1, 503)
    assert delivery.next_attempt_time == later(5)


def test_an_outcome_made_against_an_older_state_is_not_applied_twice() -> None:
    # The write conflicted; the fresh status already counts that attempt.
    fresh = Delivery("a", State.RETRYING, attempts=1, next_attempt_time=later(5))
    outcome = Outcome(0, NOW, AttemptResult(Verdict.RETRY, 503))
    assert applied([fresh], target(), {"a": outcome}) == fresh


def test_an_outcome_is_not_applied_onto_a_delivery_that_ended_meanwhile() -> None:
    done = Delivery("a", State.SUCCEEDED, attempts=1)
    outcome = Outcome(1, NOW, AttemptResult(Verdict.RETRY, 503))
    assert applied([done], target(), {"a": outcome}) == done


def test_a_deferral_postpones_without_spending_an_attempt() -> None:
    outcome = Outcome(0, NOW, deferral=Deferral("RateLimited", later(0.2)))
    delivery = applied([Delivery("a")], target(), {"a": outcome})
    assert (delivery.state, delivery.attempts) == (State.PENDING, 0)
    assert (delivery.reason, delivery.next_attempt_time) == ("RateLimited", later(0.2))


def test_a_deferred_delivery_held_meanwhile_shows_the_hold_not_the_deferral() -> None:
    paused = target(blocker=Blocker("Paused", "spec.paused is true"))
    outcome = Outcome(0, NOW, deferral=Deferral("MaxInFlight", later(1)))
    delivery = applied([Delivery("a")], paused, {"a": outcome})
    assert (delivery.reason, delivery.next_attempt_time) == ("Paused", None)


def test_an_attempt_to_a_subscription_deleted_meanwhile_counts_and_a_success_stands() -> None:
    success = Outcome(0, NOW, AttemptResult(Verdict.SUCCESS, 200))
    assert applied([Delivery("a")], {}, {"a": success}).state is State.SUCCEEDED
    failure = Outcome(0, NOW, AttemptResult(Verdict.RETRY, 503))
    delivery = applied([Delivery("a")], {}, {"a": failure})
    assert (delivery.state, delivery.reason, delivery.attempts) == (State.FAILED, "SubscriptionDeleted", 1)


def test_deliveries_without_an_outcome_are_as_planned() -> None:
    started = [Delivery("a"), Delivery("b", State.RETRYING, attempts=1, next_attempt_time=later(9))]
    targets = {**target("a"), **target("b")}
    plan = plan_attempts(started, targets, NOW)
    assert apply_outcomes(started, plan.deliveries, targets, {}) == plan.deliveries

"""The delivery state machine: matching, planning, applying results, redelivery."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_operator.domain.backoff import RetryPolicy
from webhook_operator.domain.deliveries import (
    MAX_ERROR_LENGTH,
    Blocker,
    Delivery,
    State,
    Target,
    apply_result,
    defer,
    match_targets,
    next_wake,
    plan_attempts,
    redeliver_failed,
)
from webhook_operator.domain.outcomes import AttemptResult, Verdict
from webhook_operator.domain.specs import EventSpec, SubscriptionSpec

NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
POLICY = RetryPolicy(max_attempts=3, backoff="Exponential", initial_delay=10, max_delay=3600)
MIDDLE = 0.5  # jitter that leaves the nominal delay as it is


def later(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def target(name: str, *types: str, blocker: Blocker | None = None) -> Target:
    return Target(name, SubscriptionSpec(url=f"https://{name}.example/", event_types=types), blocker)


def apply(delivery: Delivery, result: AttemptResult, policy: RetryPolicy = POLICY) -> Delivery:
    return apply_result(delivery, result, policy, now=NOW, jitter=MIDDLE)


# --- apply_result ------------------------------------------------------------------------------


def test_a_success_ends_the_delivery_succeeded() -> None:
    before = Delivery("s", State.RETRYING, attempts=1, last_error="HTTP 503", next_attempt_time=NOW)
    after = apply(before, AttemptResult(Verdict.SUCCESS, status_code=204))
    assert after == Delivery(
        "s", State.SUCCEEDED, attempts=2, last_status_code=204, last_attempt_time=NOW, succeeded_time=NOW
    )


def test_a_retryable_failure_schedules_the_next_attempt_by_backoff() -> None:
    after = apply(Delivery("s"), AttemptResult(Verdict.RETRY, status_code=503, error="HTTP 503"))
    assert after.state is State.RETRYING
    assert (after.attempts, after.last_status_code, after.last_error) == (1, 503, "HTTP 503")
    assert after.next_attempt_time == later(10)
    assert after.last_attempt_time == NOW


def test_the_second_retry_waits_twice_as_long() -> None:
    after = apply(Delivery("s", State.RETRYING, attempts=1), AttemptResult(Verdict.RETRY, error="timed out"))
    assert after.next_attempt_time == later(20)


def test_retry_after_stretches_the_next_attempt() -> None:
    after = apply(Delivery("s"), AttemptResult(Verdict.RETRY, status_code=429, retry_after=120))
    assert after.next_attempt_time == later(120)


def test_the_last_allowed_attempt_failing_exhausts_the_delivery() -> None:
    after = apply(Delivery("s", State.RETRYING, attempts=2), AttemptResult(Verdict.RETRY, status_code=500))
    assert (after.state, after.reason, after.attempts) == (State.FAILED, "AttemptsExhausted", 3)
    assert after.next_attempt_time is None


def test_a_permanent_failure_fails_at_once() -> None:
    after = apply(Delivery("s"), AttemptResult(Verdict.FAIL, status_code=400, error="HTTP 400"))
    assert (after.state, after.reason, after.attempts) == (State.FAILED, "PermanentError", 1)


def test_an_egress_refusal_fails_at_once_as_egress_denied() -> None:
    refusal = AttemptResult(Verdict.FAIL, error="egress policy refuses 10.0.0.5", egress_refused=True)
    after = apply(Delivery("s"), refusal)
    assert (after.state, after.reason, after.last_error) == (State.FAILED, "EgressDenied", refusal.error)


def test_a_410_fails_as_gone() -> None:
    after = apply(Delivery("s"), AttemptResult(Verdict.GONE, status_code=410))
    assert (after.state, after.reason) == (State.FAILED, "Gone")


def test_a_long_error_is_cut_short() -> None:
    after = apply(Delivery("s"), AttemptResult(Verdict.RETRY, error="x" * 5000))
    assert after.last_error is not None
    assert len(after.last_error) == MAX_ERROR_LENGTH and after.last_error.endswith("…")


def test_a_retry_after_success_clears_the_old_error_and_reason() -> None:
    before = Delivery("s", State.PENDING, attempts=0, reason="Redelivered", last_error="HTTP 500")
    after = apply(before, AttemptResult(Verdict.SUCCESS, status_code=200))
    assert (after.reason, after.last_error) == (None, None)


@given(
    attempts=st.integers(0, 60),
    verdict=st.sampled_from(list(Verdict)),
    max_attempts=st.integers(1, 50),
    jitter=st.floats(0, 1, exclude_max=True),
)
def test_every_attempt_counts_once_and_only_retrying_deliveries_have_a_next_attempt(
    attempts: int, verdict: Verdict, max_attempts: int, jitter: float
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, initial_delay=1, max_delay=60)
    after = apply_result(
        Delivery("s", State.RETRYING, attempts=attempts),
        AttemptResult(verdict),
        policy,
        now=NOW,
        jitter=jitter,
    )
    assert after.attempts == attempts + 1
    assert (after.next_attempt_time is not None) == (after.state is State.RETRYING)
    if after.state is State.RETRYING:
        assert after.attempts < max_attempts
        assert NOW < after.next_attempt_time <= later(60)  # type: ignore[operator]


# --- match_targets -----------------------------------------------------------------------------


def test_an_event_matches_subscriptions_by_type_sorted_by_name() -> None:
    event = EventSpec(type="order.created", data={})
    targets = [target("z", "order.*"), target("a"), target("m", "invoice.*"), target("b", "order.created")]
    assert [d.subscription for d in match_targets(event, targets)] == ["a", "b", "z"]
    assert all(d.state is State.PENDING and d.attempts == 0 for d in match_targets(event, targets))


def test_named_subscriptions_limit_the_match_and_are_still_type_filtered() -> None:
    event = EventSpec(type="order.created", data={}, subscriptions=("a", "m", "nonexistent"))
    targets = [target("a"), target("b"), target("m", "invoice.*")]
    assert [d.subscription for d in match_targets(event, targets)] == ["a"]


def test_a_subscription_with_an_invalid_spec_matches_nothing() -> None:
    event = EventSpec(type="order.created", data={})
    assert match_targets(event, [Target("broken", None)]) == ()


# --- plan_attempts -----------------------------------------------------------------------------


def test_pending_and_due_retrying_deliveries_are_due_and_future_ones_wait() -> None:
    deliveries = [
        Delivery("new"),
        Delivery("due", State.RETRYING, attempts=1, next_attempt_time=NOW),
        Delivery("later", State.RETRYING, attempts=1, next_attempt_time=later(5)),
        Delivery("done", State.SUCCEEDED, attempts=1),
        Delivery("dead", State.FAILED, attempts=3),
    ]
    targets = {name: target(name) for name in ("new", "due", "later", "done", "dead")}
    plan = plan_attempts(deliveries, targets, NOW)
    assert plan.due == ("new", "due")
    assert plan.deliveries == tuple(deliveries)


def test_a_delivery_to_a_deleted_subscription_fails_as_subscription_deleted() -> None:
    plan = plan_attempts([Delivery("gone-sub", State.RETRYING, attempts=1, next_attempt_time=NOW)], {}, NOW)
    [planned] = plan.deliveries
    assert (planned.state, planned.reason, planned.next_attempt_time) == (
        State.FAILED,
        "SubscriptionDeleted",
        None,
    )
    assert "gone-sub" in (planned.last_error or "")
    assert plan.due == ()


def test_a_finished_delivery_to_a_deleted_subscription_is_left_alone() -> None:
    done = Delivery("gone-sub", State.SUCCEEDED, attempts=1)
    assert plan_attempts([done], {}, NOW).deliveries == (done,)


def test_a_blocked_subscriptions_deliveries_wait_with_the_blockers_reason() -> None:
    paused = target("s", blocker=Blocker("Paused", "spec.paused is true"))
    plan = plan_attempts([Delivery("s")], {"s": paused}, NOW)
    assert plan.due == ()
    assert plan.deliveries == (Delivery("s", reason="Paused"),)


def test_an_unblocked_pending_delivery_loses_its_waiting_reason_and_is_due() -> None:
    plan = plan_attempts([Delivery("s", reason="Paused")], {"s": target("s")}, NOW)
    assert plan.due == ("s",)
    assert plan.deliveries == (Delivery("s"),)


FAILING = Blocker("EndpointFailing", "the endpoint failed 10 attempts in a row", gives_up=True)


def held(name: str) -> Target:
    spec = SubscriptionSpec(url=f"https://{name}.example/", event_types=("*",), retry=POLICY, timeout=2.0)
    return Target(name, spec, FAILING)


def test_a_delivery_held_by_an_open_circuit_waits_without_spending_an_attempt() -> None:
    retrying = Delivery("s", State.RETRYING, attempts=1, next_attempt_time=later(-5))
    plan = plan_attempts([retrying], {"s": held("s")}, NOW)
    assert plan.due == ()
    assert plan.deliveries == (replace(retrying, reason="EndpointFailing"),)


def test_a_held_delivery_gives_up_when_its_remaining_attempts_would_have_run_out() -> None:
    # Due at -5 s for attempt 2 of 3; attempt 3 would have come at most 2 s (its timeout) + 20 s
    # (the backoff) later: it fails at +17 s.
    retrying = Delivery("s", State.RETRYING, attempts=1, next_attempt_time=later(-5))
    assert next_wake([retrying], {"s": held("s")}, NOW) == later(17)
    [still] = plan_attempts([retrying], {"s": held("s")}, later(16.9)).deliveries
    assert still.state is State.RETRYING
    [given_up] = plan_attempts([retrying], {"s": held("s")}, later(17)).deliveries
    assert (given_up.state, given_up.reason, given_up.attempts) == (State.FAILED, "EndpointFailing", 1)
    assert given_up.last_error is not None
    assert "10 attempts in a row" in given_up.last_error
    assert given_up.next_attempt_time is None


def test_a_held_delivery_whose_own_attempt_is_still_ahead_is_looked_at_then() -> None:
    retrying = Delivery("s", State.RETRYING, attempts=1, next_attempt_time=later(8))
    assert next_wake([retrying], {"s": held("s")}, NOW) == later(8)


def test_a_never_tried_held_delivery_counts_its_wait_from_when_it_was_first_held() -> None:
    [first] = plan_attempts([Delivery("s")], {"s": held("s")}, NOW).deliveries
    assert (first.state, first.next_attempt_time) == (State.PENDING, NOW)
    # attempts 1-3 at most at 0, 2 + 10, 2 + 20 s
    assert next_wake([first], {"s": held("s")}, later(1)) == later(34)


def test_defer_postpones_without_spending_an_attempt() -> None:
    deferred = defer(Delivery("s", attempts=2), now=NOW, seconds=1, reason="MaxInFlight")
    assert (deferred.attempts, deferred.reason, deferred.next_attempt_time) == (2, "MaxInFlight", later(1))


# --- redelivery and wake-ups -------------------------------------------------------------------


def test_redeliver_puts_only_failed_deliveries_back_with_a_fresh_budget() -> None:
    failed = Delivery("f", State.FAILED, attempts=8, reason="AttemptsExhausted", last_status_code=503)
    succeeded = Delivery("s", State.SUCCEEDED, attempts=1)
    retrying = Delivery("r", State.RETRYING, attempts=2, next_attempt_time=later(30))
    again = redeliver_failed([failed, succeeded, retrying])
    assert again[1:] == (succeeded, retrying)
    assert (again[0].state, again[0].attempts, again[0].reason) == (State.PENDING, 0, "Redelivered")
    assert again[0].next_attempt_time is None
    assert again[0].last_status_code == 503  # the history stays visible


def test_next_wake_is_the_earliest_open_unblocked_attempt() -> None:
    deliveries = [
        Delivery("a", State.RETRYING, attempts=1, next_attempt_time=later(30)),
        Delivery("b", State.RETRYING, attempts=1, next_attempt_time=later(10)),
        Delivery("blocked", State.RETRYING, attempts=1, next_attempt_time=later(1)),
        Delivery("done", State.SUCCEEDED),
    ]
    targets = {
        "a": target("a"),
        "b": target("b"),
        "blocked": target("blocked", blocker=Blocker("Paused", "")),
        "done": target("done"),
    }
    assert next_wake(deliveries, targets, NOW) == later(10)
    assert next_wake([Delivery("a")], targets, NOW) == NOW
    assert next_wake([deliveries[2]], targets, NOW) is None


# --- status round trip -------------------------------------------------------------------------


def test_a_delivery_survives_the_round_trip_through_status() -> None:
    delivery = Delivery(
        "s",
        State.RETRYING,
        attempts=2,
        last_status_code=503,
        last_error="HTTP 503",
        last_attempt_time=NOW,
        next_attempt_time=later(20),
    )
    status = delivery.to_status()
    assert status == {
        "subscription": "s",
        "state": "Retrying",
        "attempts": 2,
        "lastStatusCode": 503,
        "lastError": "HTTP 503",
        "lastAttemptTime": "2025-03-01T12:00:00Z",
        "nextAttemptTime": "2025-03-01T12:00:20Z",
    }
    assert Delivery.from_status(status) == delivery


@pytest.mark.parametrize(
    "raw", [None, "s", {}, {"subscription": 5}, {"subscription": "s", "state": "Exploded", "attempts": "2"}]
)
def test_a_garbled_status_entry_is_read_leniently(raw: object) -> None:
    parsed = Delivery.from_status(raw)
    assert parsed is None or (parsed.state is State.PENDING and parsed.attempts == 0)

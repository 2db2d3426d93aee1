"""Endpoint health: counts, failure streaks, and the rules that disable an endpoint."""

from __future__ import annotations

import datetime as dt

from webhook_operator.domain.health import (
    Disabled,
    DisableRules,
    EndpointHealth,
    disable_verdict,
    record_attempt,
)
from webhook_operator.domain.outcomes import Verdict

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
RULES = DisableRules(max_consecutive_failures=3, max_failing_seconds=600)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def failures(count: int, *, every: float = 1.0, delivery_failed: bool = False) -> EndpointHealth:
    health = EndpointHealth()
    for i in range(count):
        health = record_attempt(health, Verdict.RETRY, now=at(i * every), delivery_failed=delivery_failed)
    return health


def verdict(health: EndpointHealth, outcome: Verdict, now: dt.datetime) -> Disabled | None:
    return disable_verdict(health, outcome, now=now, generation=4, rules=RULES)


def test_a_success_counts_and_ends_the_failure_streak() -> None:
    health = record_attempt(failures(2), Verdict.SUCCESS, now=at(10), delivery_failed=False)
    assert (health.delivered, health.consecutive_failures, health.failing_since) == (1, 0, None)
    assert health.last_success == health.last_delivery == at(10)


def test_failed_attempts_extend_the_streak_from_its_first_failure() -> None:
    health = failures(2)
    assert (health.consecutive_failures, health.failing_since, health.last_delivery) == (2, T0, at(1))
    assert health.failed == 0  # attempts failed; no delivery has failed yet


def test_a_delivery_that_ends_failed_counts_as_failed() -> None:
    assert failures(1, delivery_failed=True).failed == 1


def test_a_streak_shorter_than_the_rules_keeps_the_endpoint_enabled() -> None:
    assert verdict(failures(2), Verdict.RETRY, at(2)) is None


def test_too_many_failures_in_a_row_disable_the_endpoint() -> None:
    disabled = verdict(failures(3), Verdict.RETRY, at(3))
    assert disabled is not None
    assert (disabled.reason, disabled.generation, disabled.since) == ("SustainedFailure", 4, at(3))
    assert "3 attempts in a row" in disabled.message


def test_failing_for_too_long_disables_the_endpoint_even_with_few_attempts() -> None:
    health = failures(2, every=600)  # failing since T0, last failure at 600 s
    disabled = verdict(health, Verdict.RETRY, at(600))
    assert disabled is not None and disabled.reason == "SustainedFailure"
    assert "since 2025-03-01T12:00:00Z" in disabled.message


def test_a_410_disables_the_endpoint_at_once() -> None:
    disabled = verdict(EndpointHealth(), Verdict.GONE, T0)
    assert disabled is not None and disabled.reason == "Gone"


def test_a_success_never_disables() -> None:
    health = record_attempt(failures(10), Verdict.SUCCESS, now=at(10), delivery_failed=False)
    assert verdict(health, Verdict.SUCCESS, at(10)) is None


def test_a_disabled_endpoint_stays_disabled_with_its_original_reason() -> None:
    first = Disabled("Gone", "the endpoint answered 410 Gone", T0, 1)
    health = EndpointHealth(disabled=first)
    assert verdict(health, Verdict.SUCCESS, at(5)) is first


def test_health_survives_the_round_trip_through_status() -> None:
    health = EndpointHealth(
        delivered=5,
        failed=1,
        consecutive_failures=2,
        failing_since=T0,
        last_delivery=at(1),
        last_success=at(-60),
        disabled=Disabled("SustainedFailure", "3 attempts in a row failed", at(1), 2),
    )
    assert EndpointHealth.from_status(health.to_status()) == health


def test_a_healthy_endpoints_status_deletes_the_streak_fields() -> None:
    status = EndpointHealth(delivered=1, last_delivery=T0, last_success=T0).to_status()
    # null deletes the field in a merge patch
    assert status["failingSince"] is None and status["endpointDisabled"] is None


def test_garbage_in_status_reads_as_zero() -> None:
    health = EndpointHealth.from_status({"deliveredCount": "7", "failedCount": True, "failingSince": 12})
    assert health == EndpointHealth()
    assert EndpointHealth.from_status(None) == EndpointHealth()

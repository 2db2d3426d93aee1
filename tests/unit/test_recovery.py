"""Bulk recovery: the recover-since annotation, once per value, and what it puts back."""

from __future__ import annotations

import datetime as dt

import pytest

from webhook_operator.domain.deliveries import Delivery, State
from webhook_operator.domain.recovery import parse_rfc3339, pending_request, recover_failed, recovery_status


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-31T09:00:00Z", dt.datetime(2026, 1, 31, 9, tzinfo=dt.UTC)),
        ("2026-01-31T10:00:00+01:00", dt.datetime(2026, 1, 31, 9, tzinfo=dt.UTC)),
        ("2026-01-31t09:00:00.123456789z", dt.datetime(2026, 1, 31, 9, 0, 0, 123456, tzinfo=dt.UTC)),
    ],
)
def test_rfc3339_times_are_read(value: str, expected: dt.datetime) -> None:
    assert parse_rfc3339(value) == expected


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-01-31", "2026-01-31T09:00:00", "2026-02-30T00:00:00Z", "1h", ""]
)
def test_anything_else_is_not_a_time(value: str) -> None:
    assert parse_rfc3339(value) is None


def test_a_request_is_pending_once_per_new_value() -> None:
    assert pending_request(None, {}) is None
    request = pending_request("2026-01-31T09:00:00Z", {})
    assert request is not None and request.since == dt.datetime(2026, 1, 31, 9, tzinfo=dt.UTC)
    done = {"recovery": recovery_status(request, redelivered=3, now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))}
    assert done["recovery"] == {
        "since": "2026-01-31T09:00:00Z",
        "appliedTime": "2026-02-01T00:00:00Z",
        "redelivered": 3,
    }
    assert pending_request("2026-01-31T09:00:00Z", done) is None
    assert pending_request("2026-01-31T10:00:00Z", done) is not None


def test_a_bad_value_is_a_request_with_a_problem_that_says_what_to_write() -> None:
    request = pending_request("last tuesday", {})
    assert request is not None and request.since is None
    assert request.problem is not None
    assert (
        "'last tuesday', not an RFC 3339 time" in request.problem
        and "2026-01-31T09:00:00Z" in request.problem
    )
    status = recovery_status(request, redelivered=0, now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    assert status["message"] == request.problem and status["redelivered"] == 0


def test_only_the_failed_delivery_to_that_subscription_starts_over() -> None:
    deliveries = (
        Delivery("a", State.FAILED, attempts=8, reason="AttemptsExhausted", last_status_code=503),
        Delivery("b", State.FAILED, attempts=8, reason="AttemptsExhausted"),
        Delivery("c", State.SUCCEEDED, attempts=1),
    )
    recovered, count = recover_failed(deliveries, "a")
    assert count == 1
    assert recovered[0].state is State.PENDING and recovered[0].attempts == 0
    assert recovered[0].reason == "Recovered" and recovered[0].next_attempt_time is None
    assert recovered[1:] == deliveries[1:]
    assert recover_failed(deliveries, "c") == (deliveries, 0)

"""An event's Delivered and Failed conditions as summed up from its deliveries."""

from __future__ import annotations

import datetime as dt

from webhook_operator.domain.deliveries import Delivery, State
from webhook_operator.domain.event_status import summarize

NOW = dt.datetime(2026, 12, 2, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def test_an_event_with_no_matching_subscription_is_delivered() -> None:
    summary = summarize([])
    assert (summary.delivered.status, summary.delivered.reason) == ("True", "NoSubscriptions")
    assert summary.finished


def test_an_event_in_progress_says_when_its_next_retry_is() -> None:
    summary = summarize(
        [
            Delivery("a", State.SUCCEEDED, attempts=1),
            Delivery("b", State.RETRYING, attempts=1, next_attempt_time=at(30)),
            Delivery("c", State.RETRYING, attempts=2, next_attempt_time=at(10)),
        ]
    )
    assert summary.delivered.reason == "InProgress"
    assert summary.delivered.message == "1 of 3 delivered; 2 retrying (next attempt at 2026-12-02T12:00:10Z)"


def test_a_delivery_held_by_an_open_circuit_is_named_as_waiting_not_as_a_past_attempt() -> None:
    held = Delivery("b", State.RETRYING, attempts=1, reason="EndpointFailing", next_attempt_time=at(-600))
    summary = summarize([Delivery("a", State.SUCCEEDED, attempts=1), held])
    assert summary.delivered.message == "1 of 2 delivered; 1 retrying; waiting on b: EndpointFailing"


def test_a_failed_delivery_sets_failed_with_its_reason_and_error() -> None:
    failed = Delivery("b", State.FAILED, attempts=5, reason="AttemptsExhausted", last_error="HTTP 503")
    summary = summarize([Delivery("a", State.SUCCEEDED, attempts=1), failed])
    assert (summary.failure.status, summary.failure.reason) == ("True", "AttemptsExhausted")
    assert summary.failure.message == "1 of 2 deliveries failed; b after 5 attempt(s): HTTP 503"
    assert (summary.delivered.status, summary.delivered.reason) == ("False", "DeliveryFailed")
    assert summary.finished

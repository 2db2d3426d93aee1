"""Backoff: exponential and linear delays, the cap, the jitter's bounds, and Retry-After."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_operator.domain.backoff import (
    DEFAULT_RETRY,
    JITTER_SPREAD,
    STANDARD_WEBHOOKS_SCHEDULE,
    RetryPolicy,
    next_delay,
    parse_retry_after,
    retry_delay,
)

NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
MIDDLE = 0.5  # the jitter value that leaves the nominal delay unchanged

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 50),
    backoff=st.sampled_from(["Exponential", "Linear"]),
    initial_delay=st.floats(0, 86400),
    max_delay=st.floats(1, 86400),
)
jitters = st.floats(0, 1, exclude_max=True)


@pytest.mark.parametrize(("attempts", "expected"), [(1, 5), (2, 10), (3, 20), (4, 40), (5, 80)])
def test_exponential_backoff_doubles_from_the_initial_delay(attempts: int, expected: float) -> None:
    policy = RetryPolicy(backoff="Exponential", initial_delay=5, max_delay=3600)
    assert retry_delay(policy, attempts, MIDDLE) == expected


@pytest.mark.parametrize(("attempts", "expected"), [(1, 5), (2, 10), (3, 15), (4, 20)])
def test_linear_backoff_adds_the_initial_delay_each_time(attempts: int, expected: float) -> None:
    policy = RetryPolicy(backoff="Linear", initial_delay=5, max_delay=3600)
    assert retry_delay(policy, attempts, MIDDLE) == expected


def test_the_delay_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(backoff="Exponential", initial_delay=5, max_delay=60)
    assert retry_delay(policy, 10, MIDDLE) == 60
    assert retry_delay(policy, 10, 0.999) == 60  # jitter never pushes past the cap


def test_a_huge_attempt_count_does_not_overflow() -> None:
    policy = RetryPolicy(backoff="Exponential", initial_delay=5, max_delay=3600)
    assert retry_delay(policy, 10_000, MIDDLE) == 3600


def test_zero_initial_delay_retries_at_once() -> None:
    assert retry_delay(RetryPolicy(initial_delay=0, max_delay=10), 3, 0.9) == 0


@given(policy=policies, attempts=st.integers(1, 200), jitter=jitters)
def test_jitter_stays_within_ten_percent_of_the_nominal_delay_and_under_the_cap(
    policy: RetryPolicy, attempts: int, jitter: float
) -> None:
    nominal = min(retry_delay(policy, attempts, MIDDLE), policy.max_delay)
    delay = retry_delay(policy, attempts, jitter)
    assert 0 <= delay <= policy.max_delay
    assert nominal * (1 - JITTER_SPREAD / 2) - 1e-9 <= delay <= nominal * (1 + JITTER_SPREAD / 2) + 1e-9


@given(attempts=st.integers(1, 20), jitter_a=jitters, jitter_b=jitters)
def test_exponential_gaps_keep_growing_whatever_the_jitter(
    attempts: int, jitter_a: float, jitter_b: float
) -> None:
    policy = RetryPolicy(backoff="Exponential", initial_delay=1, max_delay=10**9)
    assert retry_delay(policy, attempts + 1, jitter_b) > retry_delay(policy, attempts, jitter_a)


def test_retry_after_in_seconds_is_read() -> None:
    assert parse_retry_after("120", now=NOW) == 120.0
    assert parse_retry_after(" 7 ", now=NOW) == 7.0


def test_retry_after_as_an_http_date_is_seconds_from_now() -> None:
    when = email.utils.format_datetime(NOW + dt.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(when, now=NOW) == 90.0


def test_retry_after_in_the_past_means_now() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW) == 0.0


def test_an_absurd_retry_after_in_seconds_is_bounded() -> None:
    assert parse_retry_after("9" * 40, now=NOW) == 1e9


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2020", "²", "١٢٠"])
def test_a_missing_or_malformed_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@given(st.one_of(st.text(), st.text(st.characters(categories=["Nd", "No", "Zs"]))))
def test_parsing_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=NOW)
    assert result is None or result >= 0


def test_retry_after_longer_than_the_backoff_stretches_the_delay() -> None:
    policy = RetryPolicy(initial_delay=1, max_delay=3600)
    assert next_delay(policy, 1, MIDDLE, retry_after=30) == 30


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    policy = RetryPolicy(initial_delay=10, max_delay=3600)
    assert next_delay(policy, 1, MIDDLE, retry_after=2) == 10


def test_retry_after_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(initial_delay=1, max_delay=60)
    assert next_delay(policy, 1, MIDDLE, retry_after=86400) == 60


# --- the default: the Standard Webhooks schedule -------------------------------------------------


def test_the_default_policy_is_the_standard_webhooks_schedule_spanning_more_than_a_day() -> None:
    delays = [retry_delay(DEFAULT_RETRY, n, MIDDLE) for n in range(1, DEFAULT_RETRY.max_attempts)]
    assert delays == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    assert DEFAULT_RETRY.max_attempts == 10  # the first attempt and nine retries
    assert sum(delays) >= 86400  # the last attempt comes days after the first
    assert sum(delays) == 75 * 3600 + 35 * 60 + 5  # the spec's "75:35:05 since start"


@given(attempts=st.integers(1, 60), jitter=jitters)
def test_the_schedule_is_jittered_by_at_most_ten_percent_and_never_beyond_its_last_delay(
    attempts: int, jitter: float
) -> None:
    nominal = STANDARD_WEBHOOKS_SCHEDULE[min(attempts, len(STANDARD_WEBHOOKS_SCHEDULE)) - 1]
    delay = retry_delay(DEFAULT_RETRY, attempts, jitter)
    assert nominal * (1 - JITTER_SPREAD / 2) <= delay <= nominal * (1 + JITTER_SPREAD / 2)
    assert delay <= max(STANDARD_WEBHOOKS_SCHEDULE)


def test_retry_after_stretches_a_scheduled_delay_up_to_its_longest() -> None:
    assert next_delay(DEFAULT_RETRY, 1, MIDDLE, retry_after=60) == 60
    assert next_delay(DEFAULT_RETRY, 1, MIDDLE, retry_after=10**9) == 86400

"""Leader election decisions: when the Lease may be taken, what is written, when a leader stops."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_operator.domain.leadership import (
    RELEASED_LEASE_SECONDS,
    LeaseRecord,
    Observation,
    Timings,
    claim,
    held_by_another,
    next_try_in,
    observe,
    released,
)

ME, OTHER = "pod-a_1", "pod-b_2"
DEFAULT = Timings()
T0, T1 = "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:02.000000Z"


def test_the_defaults_are_controller_runtimes() -> None:
    assert (DEFAULT.lease_duration, DEFAULT.renew_deadline, DEFAULT.retry_period) == (15.0, 10.0, 2.0)


@pytest.mark.parametrize(
    ("lease", "deadline", "retry"),
    [(10, 10, 2), (10, 15, 2), (15, 2, 2), (15, 10, 0), (15, 10, 9)],
)
def test_timings_that_leave_no_margin_are_refused(lease: float, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match="must be longer"):
        Timings(lease, deadline, retry)


def test_a_lease_held_by_another_blocks_until_unchanged_for_its_duration_on_our_clock() -> None:
    record = LeaseRecord(OTHER, 15, T0, T0, 3)
    seen = observe(None, record, now=100.0)
    assert held_by_another(seen, ME, now=114.9)
    # Reading the same record again does not restart the clock; a renewal (a new record) does.
    assert observe(seen, record, now=110.0) is seen
    assert not held_by_another(observe(seen, record, now=115.0), ME, now=115.0)
    renewed = observe(seen, LeaseRecord(OTHER, 15, T0, T1, 3), now=110.0)
    assert renewed.seen_at == 110.0
    assert held_by_another(renewed, ME, now=124.9)


def test_a_released_or_own_lease_is_not_held_by_another() -> None:
    assert not held_by_another(Observation(LeaseRecord("", 1, T0, T0, 3), 100.0), ME, now=100.0)
    assert not held_by_another(Observation(LeaseRecord(ME, 15, T0, T0, 3), 100.0), ME, now=100.0)


def test_claiming_counts_a_transition_renewing_keeps_the_acquire_time() -> None:
    created = claim(None, ME, DEFAULT, T0)
    assert created == LeaseRecord(ME, 15, T0, T0, 0)
    renewed = claim(created, ME, DEFAULT, T1)
    assert renewed == LeaseRecord(ME, 15, T0, T1, 0)
    taken = claim(LeaseRecord(OTHER, 15, T0, T0, 4), ME, DEFAULT, T1)
    assert taken == LeaseRecord(ME, 15, T1, T1, 5)


def test_a_release_clears_the_holder_and_keeps_the_transitions() -> None:
    record = released(LeaseRecord(ME, 15, T0, T0, 7), T1)
    assert record.holder == ""
    assert record.lease_duration_seconds == RELEASED_LEASE_SECONDS
    assert record.transitions == 7


def test_a_leader_stops_at_the_renew_deadline_and_its_attempts_end_before_the_lease_can_expire() -> None:
    renewed_at = 50.0
    assert not DEFAULT.must_stop(renewed_at, now=59.9)
    assert DEFAULT.must_stop(renewed_at, now=60.0)
    # 15 s lease, 1 s margin: attempts in flight may run until 64 s, then are cancelled.
    assert DEFAULT.stop_grace(renewed_at, now=60.0) == pytest.approx(4.0)
    assert DEFAULT.stop_grace(renewed_at, now=70.0) == 0.0


@given(
    lease=st.floats(3, 120),
    deadline_share=st.floats(0.1, 0.95),
    renewed_at=st.floats(0, 1e6),
    late=st.floats(0, 60),
)
def test_a_stopping_leader_is_done_before_any_observer_may_take_over(
    lease: float, deadline_share: float, renewed_at: float, late: float
) -> None:
    deadline = lease * deadline_share
    timings = Timings(lease, deadline, deadline / 2)
    now = renewed_at + deadline + late
    # An observer saw the renewal no earlier than it started, so may take over at renewed_at + lease.
    assert (
        now + timings.stop_grace(renewed_at, now) < renewed_at + lease
        or timings.stop_grace(renewed_at, now) == 0
    )


@given(st.floats(0, 1, exclude_max=True))
def test_a_standby_retries_within_client_gos_jitter(fraction: float) -> None:
    assert 2.0 <= DEFAULT.standby_delay(fraction) < 2.0 * 2.2


def test_a_standby_tries_again_when_the_holders_lease_expires_not_a_retry_period_later() -> None:
    seen = Observation(LeaseRecord(OTHER, 15, T0, T0, 0), seen_at=100.0)
    assert next_try_in(seen, DEFAULT, now=101.0, random_fraction=0.5) == pytest.approx(3.2)
    assert next_try_in(seen, DEFAULT, now=114.0, random_fraction=0.5) == pytest.approx(1.0)
    assert next_try_in(seen, DEFAULT, now=116.0, random_fraction=0.5) == 0.0
    assert next_try_in(None, DEFAULT, now=0.0, random_fraction=0.0) == 2.0

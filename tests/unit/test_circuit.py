"""An endpoint's circuit: when it opens, how long it waits, what closes it."""

from __future__ import annotations

import datetime as dt

from webhook_operator.domain.backoff import RetryPolicy
from webhook_operator.domain.circuit import Circuit, after_attempt
from webhook_operator.domain.outcomes import Verdict

NOW = dt.datetime(2026, 12, 2, 12, 0, 0, tzinfo=dt.UTC)
POLICY = RetryPolicy(initial_delay=2.0, max_delay=10.0)
MIDDLE = 0.5  # the jitter value that leaves the nominal delay unchanged


def fail(
    circuit: Circuit, *, times: int = 1, probe: bool = False, verdict: Verdict = Verdict.RETRY
) -> Circuit:
    for _ in range(times):
        circuit = after_attempt(
            circuit, verdict, threshold=3, policy=POLICY, now=NOW, jitter=MIDDLE, probe=probe
        )
    return circuit


def test_a_circuit_stays_closed_below_the_threshold():
    circuit = fail(Circuit(), times=2)
    assert circuit.is_closed
    assert circuit.failures == 2


def test_the_threshold_of_transient_failures_in_a_row_opens_it_for_the_initial_delay():
    circuit = fail(Circuit(), times=3)
    assert not circuit.is_closed
    assert circuit.retry_at == NOW + dt.timedelta(seconds=2)
    assert not circuit.probe_due(NOW + dt.timedelta(seconds=1.9))
    assert circuit.probe_due(NOW + dt.timedelta(seconds=2))


def test_permanent_failures_say_nothing_about_the_endpoint_being_down():
    circuit = fail(Circuit(), times=10, verdict=Verdict.FAIL)
    assert circuit == Circuit()


def test_a_success_closes_it_and_forgets_the_streak():
    circuit = after_attempt(
        fail(Circuit(generation=4), times=5),
        Verdict.SUCCESS,
        threshold=3,
        policy=POLICY,
        now=NOW,
        jitter=MIDDLE,
    )
    assert circuit == Circuit(generation=4)


def test_each_failed_probe_doubles_the_wait_up_to_the_max_delay():
    circuit = fail(Circuit(), times=3)
    waits = []
    for _ in range(4):
        circuit = fail(circuit, probe=True)
        assert circuit.retry_at is not None
        waits.append((circuit.retry_at - NOW).total_seconds())
    assert waits == [4.0, 8.0, 10.0, 10.0]


def test_failures_of_attempts_sent_before_it_opened_do_not_lengthen_the_wait():
    opened = fail(Circuit(), times=3)
    later = fail(opened, times=50, probe=False)
    assert later.retry_at == opened.retry_at
    assert later.failures == 53


def test_a_threshold_of_zero_never_opens_it():
    circuit = after_attempt(Circuit(), Verdict.RETRY, threshold=0, policy=POLICY, now=NOW, jitter=MIDDLE)
    for _ in range(100):
        circuit = after_attempt(circuit, Verdict.RETRY, threshold=0, policy=POLICY, now=NOW, jitter=MIDDLE)
    assert circuit.is_closed

"""Scenario 5: shutdown. On SIGTERM the operator stops taking new attempts, finishes the requests
in flight within its grace period and writes their status, so a rolling update loses and repeats
nothing; a request hung past the grace period is abandoned and resent after the restart. The
time from SIGTERM to deliveries flowing again is the number docs/guarantees.md quotes."""

from __future__ import annotations

import pytest

from tests.faults.harness import publish
from tests.faults.scenarios import grace_exceeded_scenario, sigterm_scenario

pytestmark = pytest.mark.faults


async def test_sigterm_finishes_and_records_in_flight_deliveries_and_the_restart_resumes(
    cluster, receiver, operator_process
):
    report = await sigterm_scenario(
        "shutdown: SIGTERM process x2, 20 events",
        cluster=cluster,
        receiver=receiver,
        operator=operator_process,
        events=10,
        cycles=2,
    )
    publish(report)


async def test_a_request_hung_past_the_grace_period_is_abandoned_and_resent(
    cluster, receiver, threaded_operator
):
    report = await grace_exceeded_scenario(
        "shutdown: request hung past the grace",
        cluster=cluster,
        receiver=receiver,
        start_operator=threaded_operator,
    )
    publish(report)

"""Scenario 3: receivers that are slow, hang, reset connections, answer 5xx for a while, or go
away. Retries stay within each subscription's policy, a broken endpoint never delays fresh
events to a healthy one, and the engine's memory shrinks back once events finish."""

from __future__ import annotations

import pytest

from tests.faults.harness import publish
from tests.faults.scenarios import bad_receivers_scenario, head_of_line_scenario
from webhook_operator.domain.health import DisableRules

pytestmark = pytest.mark.faults


async def test_fresh_events_keep_their_latency_while_retries_wait_for_broken_endpoints(
    standin, cluster, receiver, threaded_operator
):
    report = await head_of_line_scenario(
        "receivers: head-of-line, 200 retrying + 30 hanging",
        cluster=cluster,
        standin=standin,
        receiver=receiver,
        # Not disabled by its streak of failures here (1000 in a row by default): the point is latency.
        start_operator=lambda: threaded_operator(disable_rules=DisableRules(100_000, 86400.0)),
        retrying=200,
        hanging=30,
        fresh=15,
        fresh_rate=15,
    )
    publish(report)


async def test_slow_hanging_resetting_flapping_and_vanishing_receivers_stay_within_their_retry_policy(
    cluster, receiver, second_receiver, threaded_operator
):
    report = await bad_receivers_scenario(
        "receivers: slow/hang/reset/5xx/429/away/gone",
        cluster=cluster,
        receiver=receiver,
        away=second_receiver,
        start_operator=threaded_operator,
    )
    publish(report)

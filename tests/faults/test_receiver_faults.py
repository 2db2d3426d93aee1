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
    standin, cluster, receiver, operator_process
):
    """Against the operator as its own process: in a thread it would share one interpreter with
    the stand-in and the receivers, and the latency would measure their CPU contention."""

    async def start():
        # Not disabled by its streak of failures here (1000 in a row by default), and no circuit:
        # every retry is sent. The point is latency under the heaviest retry load.
        operator_process.args += ("--disable-after-failures", "1000000", "--circuit-after-failures", "0")
        await operator_process.start()
        return operator_process

    report = await head_of_line_scenario(
        "receivers: head-of-line, 200 retrying + 30 hanging, no circuit",
        cluster=cluster,
        standin=standin,
        receiver=receiver,
        start_operator=start,
        retrying=200,
        hanging=30,
        fresh=15,
        fresh_rate=15,
        latency_bound=1.0,
    )
    publish(report)


async def test_the_engine_lets_go_of_every_event_once_a_retry_storm_is_over(
    standin, cluster, receiver, threaded_operator
):
    """In a thread, where the engine's stores can be looked at: queue, schedule, in-flight slots,
    waiting and pending maps, open circuits all back to zero (finished events keep only a small
    tombstone). With the default circuit: the broken endpoints' deliveries are held, then drain."""
    report = await head_of_line_scenario(
        "receivers: storm in-thread, engine memory",
        cluster=cluster,
        standin=standin,
        receiver=receiver,
        start_operator=lambda: threaded_operator(disable_rules=DisableRules(100_000, 86400.0)),
        retrying=200,
        hanging=30,
        fresh=10,
        fresh_rate=15,
        latency_bound=3.0,
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

"""Endpoint health in the subscription's status: counted in memory, flushed a few times, not per delivery."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import eventually
from tests.integration.conftest import create_event, create_subscription, read, wait_condition

SUBS = "webhooksubscriptions"


async def test_counts_and_times_reach_the_status(standin, receiver, operator):
    receiver.script("/s", [200, 400])
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s")})
    await wait_condition(standin, SUBS, "s", "Ready")
    await create_event(standin, "ok", {"type": "a", "data": {}})
    await wait_condition(standin, "webhookevents", "ok", "Delivered")
    await create_event(standin, "bad", {"type": "a", "data": {}})
    await wait_condition(standin, "webhookevents", "bad", "Failed")

    async def counted():
        status = (await read(standin, SUBS, "s"))["status"]
        return status if status.get("failedCount") == 1 else None

    status = await eventually(counted, timeout=5)
    assert status["deliveredCount"] == 1
    assert status["consecutiveFailures"] == 1
    assert status["lastDeliveryTime"] >= status["lastSuccessTime"]
    assert "failingSince" in status


async def test_two_hundred_deliveries_cost_a_bounded_number_of_subscription_status_writes(
    standin, receiver, operator
):
    await operator.restart(health_flush_seconds=1.0)
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s")})
    await wait_condition(standin, SUBS, "s", "Ready")
    writes_before = standin.count("patch", resource=SUBS, subresource="status")
    started = time.monotonic()
    await asyncio.gather(
        *(create_event(standin, f"e{n:03d}", {"type": "a", "data": {"n": n}}) for n in range(200))
    )

    async def all_counted():
        status = (await read(standin, SUBS, "s"))["status"]
        return status.get("deliveredCount") == 200

    await eventually(all_counted, timeout=30, what="deliveredCount to reach 200")
    elapsed = time.monotonic() - started
    writes = standin.count("patch", resource=SUBS, subresource="status") - writes_before
    assert len(receiver.at("/s")) == 200
    assert writes <= elapsed / 1.0 + 2, f"{writes} status writes in {elapsed:.1f} s"
    assert writes < 20

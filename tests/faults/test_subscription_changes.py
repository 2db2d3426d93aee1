"""Scenario 4: many events for a subscription that is deleted, or paused, mid-way. Deleted: its
open deliveries end Failed with reason SubscriptionDeleted (none stuck, none waiting out a
backoff). Paused: they wait Pending, and are delivered once it is unpaused."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.harness import Hang, Reply, condition, deliveries, publish
from tests.faults.scenarios import deleted_mid_way_scenario, paused_mid_way_scenario, until

pytestmark = pytest.mark.faults


async def test_deliveries_to_a_subscription_deleted_mid_way_end_failed_subscription_deleted(
    cluster, receiver, threaded_operator
):
    report = await deleted_mid_way_scenario(
        "subscription deleted mid-way, 60 events",
        cluster=cluster,
        receiver=receiver,
        start_operator=threaded_operator,
        events=60,
        delete_after=15,
    )
    publish(report)


async def test_deliveries_to_a_subscription_paused_mid_way_wait_and_resume(
    cluster, receiver, threaded_operator
):
    report = await paused_mid_way_scenario(
        "subscription paused mid-way, 80 events",
        cluster=cluster,
        receiver=receiver,
        start_operator=threaded_operator,
        events=80,
        pause_after=20,
    )
    publish(report)


async def test_a_delivery_in_backoff_ends_as_soon_as_its_subscription_is_deleted(
    cluster, receiver, threaded_operator
):
    """Regression: only deliveries blocked on a subscription heard of its deletion; one waiting
    out a backoff stayed Retrying toward a deleted subscription until its next attempt time
    (up to maxDelaySeconds: an hour by default)."""
    receiver.on("/later", Reply(503))
    retry = {"initialDelaySeconds": 600, "maxDelaySeconds": 600}
    await cluster.subscribe("later", receiver.endpoint("/later"), retry=retry)
    await threaded_operator()
    await cluster.produce(1, prefix="backoff")
    await until(lambda: receiver.requests("/later"), 10, "the first attempt")
    await asyncio.sleep(0.3)  # its Retrying status is written
    deleted = time.monotonic()
    await cluster.delete("webhooksubscriptions", "later")
    [event] = await cluster.wait_finished(["backoff-0000"], 10)
    assert time.monotonic() - deleted < 3
    entry = deliveries(event)["later"]
    assert (entry["state"], entry["reason"], entry["attempts"]) == ("Failed", "SubscriptionDeleted", 1)


async def test_an_attempt_that_succeeded_as_its_subscription_was_deleted_is_recorded_succeeded(
    cluster, receiver, threaded_operator
):
    """Regression: the write after the attempt planned the delivery anew, found the subscription
    gone and recorded Failed/SubscriptionDeleted, although the receiver had acknowledged it."""
    receiver.on("/slow", Reply(200, delay=1.0))
    await cluster.subscribe("slow", receiver.endpoint("/slow"))
    await threaded_operator()
    await cluster.produce(1, prefix="raced")
    await until(lambda: receiver.requests("/slow"), 10, "the attempt to start")
    await cluster.delete("webhooksubscriptions", "slow")  # while the receiver works on it
    [event] = await cluster.wait_finished(["raced-0000"], 10)
    assert len(receiver.acks("/slow")) == 1
    entry = deliveries(event)["slow"]
    assert (entry["state"], entry["attempts"]) == ("Succeeded", 1), entry
    assert (condition(event, "Delivered") or {}).get("status") == "True"


async def test_a_delivery_deferred_for_max_in_flight_as_the_subscription_is_paused_shows_paused(
    cluster, receiver, threaded_operator
):
    """Regression: a delivery that waited for a maxInFlight slot while the subscription was being
    paused was written as reason MaxInFlight with a next attempt time that never came (it waits on
    the pause), instead of Pending/Paused."""
    receiver.on("/one", Hang())
    await cluster.subscribe("one", receiver.endpoint("/one"), maxInFlight=1, timeoutSeconds=10)
    # A long slot wait (default 0.5 s), still under the 2 s after which an attempt shows InFlight.
    await threaded_operator(slot_wait_seconds=1.5)
    await cluster.produce(1, prefix="holder")
    await until(lambda: receiver.requests("/one"), 10, "the first event to hold the only slot")
    await cluster.produce(1, prefix="waiter")  # its reconcile now waits up to 1.5 s for the slot
    await asyncio.sleep(0.4)
    await cluster.patch_spec("webhooksubscriptions", "one", {"paused": True})
    await asyncio.sleep(2.0)  # the slot wait ends, the deferral is written
    entry = deliveries(await cluster.get("webhookevents", "waiter-0000"))["one"]
    assert (entry["state"], entry.get("reason")) == ("Pending", "Paused"), entry
    assert "nextAttemptTime" not in entry

"""Events over time: paused subscriptions, operator restarts, manual replay, retention, bad events."""

from __future__ import annotations

import asyncio

from tests.conftest import eventually
from tests.integration.conftest import (
    create_event,
    create_subscription,
    delivery,
    patch,
    read,
    wait_condition,
)

REDELIVER = "webhooks.openplatform.dev/redeliver"


async def test_a_paused_subscription_keeps_deliveries_pending_and_delivers_when_unpaused(
    standin, receiver, operator
):
    await create_subscription(standin, "sub", {"url": receiver.endpoint("/p"), "paused": True})
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready", "False", "Paused")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered", "False", "InProgress")
    entry = delivery(event, "sub")
    assert (entry["state"], entry["attempts"], entry["reason"]) == ("Pending", 0, "Paused")
    await asyncio.sleep(0.5)
    assert receiver.at("/p") == []

    await patch(standin, "webhooksubscriptions", "sub", {"spec": {"paused": False}})
    await wait_condition(standin, "webhookevents", "e1", "Delivered", "True")
    assert len(receiver.at("/p")) == 1


async def test_an_operator_stopped_mid_retry_resumes_from_the_status_after_a_restart(
    standin, receiver, operator
):
    receiver.script("/flaky", [503, 200])
    await create_subscription(
        standin, "sub", {"url": receiver.endpoint("/flaky"), "retry": {"initialDelaySeconds": 2}}
    )
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready")
    created = await create_event(standin, "e1", {"type": "order.created", "data": {}})
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered", "False", "InProgress")
    assert delivery(event, "sub")["state"] == "Retrying"

    await operator.stop()
    await asyncio.sleep(2.5)  # the retry falls due while no operator runs
    assert len(receiver.at("/flaky")) == 1
    await operator.start()

    event = await wait_condition(standin, "webhookevents", "e1", "Delivered", "True")
    attempts = receiver.at("/flaky")
    assert len(attempts) == 2
    assert attempts[1].headers["webhook-id"] == created["metadata"]["uid"]
    assert delivery(event, "sub")["attempts"] == 2


async def test_the_redeliver_annotation_puts_failed_deliveries_back_and_delivers_them(
    standin, receiver, operator
):
    receiver.script("/strict", [400])
    await create_subscription(standin, "sub", {"url": receiver.endpoint("/strict")})
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "e1", "Failed", "True")

    await patch(standin, "webhookevents", "e1", {"metadata": {"annotations": {REDELIVER: "first"}}})
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered", "True")
    entry = delivery(event, "sub")
    assert (entry["state"], entry["attempts"]) == ("Succeeded", 1)
    assert event["status"]["redelivered"] == "first"
    failed = [c for c in event["status"]["conditions"] if c["type"] == "Failed"][0]
    assert failed["status"] == "False"
    assert len(receiver.at("/strict")) == 2

    # The same value again does nothing; only a new value replays.
    await patch(standin, "webhookevents", "e1", {"metadata": {"labels": {"touched": "yes"}}})
    await asyncio.sleep(0.5)
    assert len(receiver.at("/strict")) == 2


async def test_a_finished_event_is_deleted_after_its_ttl(standin, receiver, operator):
    await create_subscription(standin, "sub", {"url": receiver.endpoint("/t")})
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready")
    await create_event(standin, "short", {"type": "order.created", "data": {}, "ttlSecondsAfterFinished": 1})
    await create_event(standin, "kept", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "kept", "Delivered")

    async def gone():
        return await read(standin, "webhookevents", "short") is None

    await eventually(gone, timeout=5, what="the event with a 1 s TTL to be deleted")
    assert await read(standin, "webhookevents", "kept") is not None


async def test_the_operator_wide_default_ttl_applies_to_events_without_their_own(standin, receiver, operator):
    await operator.restart(default_ttl_seconds=1)
    await create_event(standin, "e1", {"type": "nothing.matches", "data": {}})

    async def gone():
        return await read(standin, "webhookevents", "e1") is None

    await eventually(gone, timeout=5, what="the default TTL to delete the event")


async def test_an_oversized_event_fails_with_a_clear_reason_and_is_not_delivered(standin, receiver, operator):
    await operator.restart(max_data_bytes=1024)
    await create_subscription(standin, "sub", {"url": receiver.endpoint("/big")})
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready")
    await create_event(standin, "big", {"type": "order.created", "data": {"blob": "x" * 2000}})
    event = await wait_condition(standin, "webhookevents", "big", "Failed", "True", "PayloadTooLarge")
    assert (
        "limit is 1024 bytes"
        in [c for c in event["status"]["conditions"] if c["type"] == "Failed"][0]["message"]
    )
    assert receiver.at("/big") == []


async def test_an_event_without_data_fails_as_invalid_instead_of_wedging(standin, receiver, operator):
    await create_event(standin, "bad", {"type": "order.created"})
    event = await wait_condition(standin, "webhookevents", "bad", "Failed", "True", "InvalidEvent")
    assert (
        "spec.data is required"
        in [c for c in event["status"]["conditions"] if c["type"] == "Failed"][0]["message"]
    )

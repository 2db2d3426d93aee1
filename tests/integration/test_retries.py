"""Retries through the reconcile loop: backoff, Retry-After, permanent failures, exhaustion."""

from __future__ import annotations

from tests.conftest import eventually
from tests.integration.conftest import create_event, create_subscription, delivery, read, wait_condition
from tests.integration.test_kubernetes_events import kubernetes_events


async def _subscribe(standin, receiver, path, **retry):
    spec = {"url": receiver.endpoint(path), "retry": {"initialDelaySeconds": 1, **retry}}
    await create_subscription(standin, "sub", spec)
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready")


async def test_two_503s_then_200_is_delivered_in_three_attempts_with_growing_gaps(
    standin, receiver, operator
):
    receiver.script("/flaky", [503, 503, 200])
    await _subscribe(standin, receiver, "/flaky")
    created = await create_event(standin, "e1", {"type": "order.created", "data": {}})
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered", timeout=15)

    attempts = receiver.at("/flaky")
    assert len(attempts) == 3
    assert {a.headers["webhook-id"] for a in attempts} == {created["metadata"]["uid"]}
    first_gap, second_gap = attempts[1].at - attempts[0].at, attempts[2].at - attempts[1].at
    assert 0.85 <= first_gap < 1.6  # initial delay 1 s, +/-10 % jitter
    assert second_gap > first_gap * 1.5  # exponential: ~2 s
    entry = delivery(event, "sub")
    assert (entry["state"], entry["attempts"], entry["lastStatusCode"]) == ("Succeeded", 3, 200)


async def test_a_429_with_retry_after_is_honoured(standin, receiver, operator):
    receiver.script("/busy", [(429, {"Retry-After": "2"}), 200])
    await _subscribe(standin, receiver, "/busy")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "e1", "Delivered", timeout=15)
    first, second = receiver.at("/busy")
    assert second.at - first.at >= 1.9  # Retry-After 2 s beats the 1 s backoff


async def test_a_retrying_delivery_shows_its_next_attempt_time(standin, receiver, operator):
    receiver.script("/down", [503] * 10)
    await _subscribe(standin, receiver, "/down", initialDelaySeconds=30)
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered", "False", "InProgress")
    entry = delivery(event, "sub")
    assert entry["state"] == "Retrying"
    assert entry["attempts"] == 1
    assert entry["lastStatusCode"] == 503
    assert entry["nextAttemptTime"] > entry["lastAttemptTime"]
    assert event["status"]["pending"] == 1


async def test_a_400_fails_the_delivery_at_once(standin, receiver, operator):
    receiver.script("/strict", [400])
    await _subscribe(standin, receiver, "/strict")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    event = await wait_condition(standin, "webhookevents", "e1", "Failed", "True", "PermanentError")
    assert len(receiver.at("/strict")) == 1
    entry = delivery(event, "sub")
    assert (entry["state"], entry["attempts"], entry["lastStatusCode"]) == ("Failed", 1, 400)
    delivered = [c for c in event["status"]["conditions"] if c["type"] == "Delivered"][0]
    assert (delivered["status"], delivered["reason"]) == ("False", "DeliveryFailed")


async def test_a_redirect_is_not_followed_and_fails_the_delivery(standin, receiver, operator):
    receiver.script("/moved", [(302, {"Location": receiver.endpoint("/elsewhere")})])
    await _subscribe(standin, receiver, "/moved")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    event = await wait_condition(standin, "webhookevents", "e1", "Failed", "True")
    assert receiver.at("/elsewhere") == []
    assert "redirects are not followed" in delivery(event, "sub")["lastError"]


async def test_exhausting_max_attempts_ends_failed(standin, receiver, operator):
    receiver.script("/dead", [500] * 10)
    await _subscribe(standin, receiver, "/dead", initialDelaySeconds=0, maxAttempts=3)
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    event = await wait_condition(
        standin, "webhookevents", "e1", "Failed", "True", "AttemptsExhausted", timeout=15
    )
    assert len(receiver.at("/dead")) == 3
    assert delivery(event, "sub")["attempts"] == 3
    assert event["status"]["failed"] == 1


async def test_a_410_fails_the_delivery_and_disables_the_subscription(standin, receiver, operator):
    receiver.script("/gone", [410])
    await _subscribe(standin, receiver, "/gone")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "e1", "Failed", "True", "Gone")
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready", "False", "EndpointDisabled")


async def test_a_connection_refused_is_retried(standin, receiver, operator):
    await create_subscription(
        standin,
        "sub",
        {"url": "http://127.0.0.1:9/nothing", "retry": {"initialDelaySeconds": 0, "maxAttempts": 2}},
    )
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    event = await wait_condition(standin, "webhookevents", "e1", "Failed", "True", "AttemptsExhausted")
    entry = delivery(event, "sub")
    assert entry["attempts"] == 2
    assert "refused" in entry["lastError"]
    assert "lastStatusCode" not in entry


async def test_an_attempt_that_takes_long_shows_as_in_flight_until_it_ends(standin, receiver, operator):
    await operator.restart(in_flight_report_seconds=0.3)
    receiver.hang("/slow")
    await create_subscription(
        standin, "sub", {"url": receiver.endpoint("/slow"), "timeoutSeconds": 2, "retry": {"maxAttempts": 1}}
    )
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})

    async def in_flight():
        event = await read(standin, "webhookevents", "e1")
        deliveries = ((event or {}).get("status") or {}).get("deliveries") or []
        return deliveries if deliveries and deliveries[0]["state"] == "InFlight" else None

    [shown] = await eventually(in_flight, timeout=2, what="the hanging attempt to show as InFlight")
    assert shown["attempts"] == 0  # the attempt counts once it has ended
    event = await wait_condition(
        standin, "webhookevents", "e1", "Failed", "True", "AttemptsExhausted", timeout=5
    )
    entry = delivery(event, "sub")
    assert (entry["state"], entry["attempts"]) == ("Failed", 1)
    assert "timed out" in entry["lastError"]


async def test_a_delivery_that_needed_retries_leaves_a_kubernetes_event_saying_so(
    standin, receiver, operator
):
    receiver.script("/flaky", [503, 200])
    await _subscribe(standin, receiver, "/flaky", initialDelaySeconds=0)
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "e1", "Delivered")

    async def told():
        return [
            e for e in await kubernetes_events(standin, "Delivered") if e["involvedObject"]["name"] == "e1"
        ]

    [event] = await eventually(told, timeout=5)
    assert event["message"] == "delivered to sub after 2 attempts"
    assert event["type"] == "Normal"

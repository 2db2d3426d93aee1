"""Kubernetes Events, as `kubectl describe` and `kubectl get events` show them: they tell what happened,
and a flood of failing webhook events does not become a flood of Kubernetes Events."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import eventually
from tests.integration.conftest import (
    NAMESPACE,
    condition,
    create_event,
    create_subscription,
    delete,
    read,
    test_config,
    wait_condition,
)
from webhook_operator.domain.health import DisableRules
from webhook_operator.testing.operator_thread import OperatorThread

EVENTS = "webhookevents"
SUBS = "webhooksubscriptions"
ONE_ATTEMPT = {"maxAttempts": 1}


async def kubernetes_events(standin, reason: str | None = None) -> list[dict[str, Any]]:
    """The core v1 Events of the namespace, as `kubectl get events -n shop` lists them."""
    async with (
        aiohttp.ClientSession(base_url=str(standin.url)) as session,
        session.get(standin.api_path("events", NAMESPACE)) as response,
    ):
        assert response.status == 200, await response.text()
        items = (await response.json())["items"]
    return [e for e in items if reason is None or e.get("reason") == reason]


async def merge_patch(standin, resource: str, name: str, patch: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession(base_url=str(standin.url)) as session,
        session.patch(
            standin.api_path(resource, NAMESPACE, name),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def settled(standin, reason: str, at_least: int = 1) -> list[dict[str, Any]]:
    """The Events with `reason` once at least `at_least` exist and no more arrive for 0.3 s."""
    await eventually(
        lambda: _at_least(standin, reason, at_least), timeout=5, what=f"{at_least} {reason} Event(s)"
    )
    previous = -1
    while True:
        found = await kubernetes_events(standin, reason)
        if len(found) == previous:
            return found
        previous = len(found)
        await asyncio.sleep(0.3)


async def _at_least(standin, reason: str, n: int) -> bool:
    return len(await kubernetes_events(standin, reason)) >= n


@pytest.fixture
async def disabling_operator(standin) -> AsyncIterator[OperatorThread]:
    running = OperatorThread(test_config(standin, disable_rules=DisableRules(max_consecutive_failures=3)))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_a_failing_endpoint_and_sixty_events_make_a_bounded_number_of_events(
    standin, receiver, operator
):
    receiver.script("/down", [400] * 1000)
    await create_subscription(standin, "crm", {"url": receiver.endpoint("/down"), "retry": ONE_ATTEMPT})
    await wait_condition(standin, SUBS, "crm", "Ready")
    started = time.monotonic()
    names = [f"order-{n:03d}" for n in range(60)]
    await asyncio.gather(
        *(create_event(standin, name, {"type": "order.created", "data": {}}) for name in names)
    )
    for name in names:
        await wait_condition(standin, EVENTS, name, "Failed", reason="PermanentError")
    failed = await settled(standin, "DeliveryFailed")
    elapsed = time.monotonic() - started

    # The recorder's budget: a burst of 20, then 5 a second. 60 failures make far fewer Events.
    assert len(failed) <= 20 + 5 * elapsed + 1, f"{len(failed)} Events in {elapsed:.1f} s"
    assert len(failed) < len(names)
    assert operator.engine is not None
    assert operator.engine.recorder.suppressed >= len(names) - len(failed)
    # The API-writes metric counts each Event the API server stored (none is left out of it).
    posted = standin.count("create", resource="events")
    written = operator.engine.metrics.registry.get_sample_value(
        "webhook_operator_api_writes_total", {"kind": "kubernetes-event"}
    )
    assert written == posted >= len(failed)
    # At most one per object and reason: the Events name distinct WebhookEvents.
    per_object = Counter(e["involvedObject"]["name"] for e in failed)
    assert max(per_object.values()) == 1
    assert set(per_object) <= set(names)

    event = failed[0]
    involved = event["involvedObject"]
    obj = await read(standin, EVENTS, involved["name"])
    assert involved == {
        "apiVersion": "webhooks.openplatform.dev/v1alpha1",
        "kind": "WebhookEvent",
        "name": obj["metadata"]["name"],
        "namespace": NAMESPACE,
        "uid": obj["metadata"]["uid"],
    }
    assert event["type"] == "Warning"
    assert event["source"] == {"component": "webhook-operator"}
    assert event["message"].startswith("delivery to crm failed after 1 attempt(s): HTTP 400"), event[
        "message"
    ]
    assert receiver.url not in event["message"]
    assert event["count"] == 1 and event["firstTimestamp"] and event["lastTimestamp"]


async def test_repeated_failures_of_one_event_are_folded_into_one_kubernetes_event(
    standin, receiver, operator
):
    receiver.script("/down", [400] * 10)
    await create_subscription(standin, "crm", {"url": receiver.endpoint("/down"), "retry": ONE_ATTEMPT})
    await wait_condition(standin, SUBS, "crm", "Ready")
    await create_event(standin, "order-1", {"type": "order.created", "data": {}})
    await wait_condition(standin, EVENTS, "order-1", "Failed")
    for replay in ("1", "2"):  # a person replays it twice; it fails twice more
        await merge_patch(
            standin,
            EVENTS,
            "order-1",
            {"metadata": {"annotations": {"webhooks.openplatform.dev/redeliver": replay}}},
        )

        async def replayed(replay: str = replay) -> bool:
            obj = await read(standin, EVENTS, "order-1")
            return obj["status"].get("redelivered") == replay and condition(obj, "Failed")["status"] == "True"

        await eventually(replayed, timeout=5, what=f"replay {replay} to fail")
    assert len(receiver.at("/down")) == 3
    failed = await settled(standin, "DeliveryFailed")
    assert len(failed) == 1, [e["message"] for e in failed]
    assert operator.engine is not None and operator.engine.recorder.suppressed == 2


async def test_a_disabled_endpoint_says_so_on_the_subscription_and_its_events_say_why_they_failed(
    standin, receiver, disabling_operator
):
    receiver.script("/down", [503] * 3)  # then 200: the endpoint recovers, unseen until re-enabled
    await create_subscription(standin, "crm", {"url": receiver.endpoint("/down"), "retry": ONE_ATTEMPT})
    sub = await wait_condition(standin, SUBS, "crm", "Ready")
    for n in range(3):
        await create_event(standin, f"order-{n}", {"type": "order.created", "data": {}})
        await wait_condition(standin, EVENTS, f"order-{n}", "Failed", reason="AttemptsExhausted")
    await wait_condition(standin, SUBS, "crm", "Ready", "False", "EndpointDisabled")

    [disabled] = await settled(standin, "EndpointDisabled")
    assert disabled["type"] == "Warning"
    assert disabled["involvedObject"]["kind"] == "WebhookSubscription"
    assert disabled["involvedObject"]["name"] == "crm"
    assert disabled["involvedObject"]["uid"] == sub["metadata"]["uid"]
    assert "3" in disabled["message"], disabled["message"]
    assert receiver.url not in disabled["message"]

    failed = await settled(standin, "DeliveryFailed", at_least=3)
    assert sorted(e["involvedObject"]["name"] for e in failed) == ["order-0", "order-1", "order-2"]
    assert all("HTTP 503" in e["message"] and "after 1 attempt(s)" in e["message"] for e in failed)

    # A fourth event waits instead of failing, and costs no Kubernetes Event.
    await create_event(standin, "order-3", {"type": "order.created", "data": {}})

    async def waiting() -> dict[str, Any] | None:
        obj = await read(standin, EVENTS, "order-3")
        entries = ((obj or {}).get("status") or {}).get("deliveries") or []
        return obj if entries and entries[0].get("reason") == "EndpointDisabled" else None

    await eventually(waiting, timeout=5, what="order-3 to wait on the disabled endpoint")
    assert len(receiver.at("/down")) == 3
    assert len(await kubernetes_events(standin, "DeliveryFailed")) == 3

    # Re-enabled by the annotation: the subscription's story continues.
    await merge_patch(
        standin, SUBS, "crm", {"metadata": {"annotations": {"webhooks.openplatform.dev/reenable": "1"}}}
    )
    await wait_condition(standin, SUBS, "crm", "Ready", "True", "Active")
    await wait_condition(standin, EVENTS, "order-3", "Delivered")
    [reenabled] = await settled(standin, "EndpointReenabled")
    assert reenabled["involvedObject"]["name"] == "crm" and reenabled["type"] == "Normal"
    reasons = [
        e["reason"]
        for e in await kubernetes_events(standin)
        if e["involvedObject"]["kind"] == "WebhookSubscription"
    ]
    assert reasons.count("EndpointDisabled") == 1


async def test_a_repeat_after_the_window_says_how_many_were_folded_in(standin):
    """The recorder on its own, with a short window: what a repeat after the window looks like."""
    import kopf

    from webhook_operator.kube import KubeClient
    from webhook_operator.recorder import EventRecorder, ObjectRef

    kube = KubeClient()
    await kube.use(kopf.ConnectionInfo(server=str(standin.url), insecure=True))
    recorder = EventRecorder(kube, window=0.5)
    ref = ObjectRef("WebhookSubscription", NAMESPACE, "crm", "uid-1")
    try:
        for _ in range(3):
            recorder.record(ref, "Flapping", "endpoint flapped", warning=True)
        recorder.record(ref, "Other", "another reason is its own story")
        await asyncio.sleep(0.6)
        recorder.record(ref, "Flapping", "endpoint flapped again", warning=True)
        await recorder.aclose()
    finally:
        await kube.aclose()
    messages = sorted(e["message"] for e in await kubernetes_events(standin, "Flapping"))
    assert messages == ["endpoint flapped", "endpoint flapped again (2 similar event(s) folded in)"]
    assert len(await kubernetes_events(standin, "Other")) == 1
    assert (recorder.posted, recorder.suppressed) == (3, 2)


async def test_a_delivery_ended_by_its_subscriptions_deletion_is_told_as_failed(standin, receiver, operator):
    receiver.script("/later", [503])
    await create_subscription(
        standin, "later", {"url": receiver.endpoint("/later"), "retry": {"initialDelaySeconds": 30}}
    )
    await wait_condition(standin, SUBS, "later", "Ready", "True")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    await wait_condition(standin, EVENTS, "e1", "Delivered", "False", "InProgress")
    await delete(standin, SUBS, "later")
    await wait_condition(standin, EVENTS, "e1", "Failed", "True", "SubscriptionDeleted")
    [told] = [e for e in await settled(standin, "DeliveryFailed") if e["involvedObject"]["name"] == "e1"]
    assert told["type"] == "Warning"
    assert "SubscriptionDeleted" in told["message"]

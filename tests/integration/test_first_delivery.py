"""The first path through the product: a subscription becomes Ready, an event is delivered, signed."""

from __future__ import annotations

import json

from standardwebhooks.webhooks import Webhook

from tests.conftest import eventually
from tests.integration.conftest import (
    NAMESPACE,
    create_event,
    create_secret,
    create_subscription,
    delivery,
    wait_condition,
)


async def test_a_new_subscription_gets_a_ready_condition_through_the_status_subresource(
    standin, receiver, operator
):
    await create_subscription(standin, "orders", {"url": receiver.endpoint("/hooks/orders")})
    sub = await wait_condition(standin, "webhooksubscriptions", "orders", "Ready", "True", "Active")
    ready = [c for c in sub["status"]["conditions"] if c["type"] == "Ready"][0]
    assert ready["observedGeneration"] == sub["metadata"]["generation"]
    assert sub["status"]["observedGeneration"] == sub["metadata"]["generation"]
    assert standin.count("patch", resource="webhooksubscriptions", subresource="status") >= 1
    assert standin.count("patch", resource="webhooksubscriptions", subresource="") == 0


async def test_an_event_is_delivered_with_the_exact_body_and_a_verifiable_signature(
    standin, receiver, operator, signing_key
):
    await create_secret(standin, "crm-secret", {"signingKey": signing_key})
    await create_subscription(
        standin,
        "orders",
        {
            "url": receiver.endpoint("/hooks/orders"),
            "signing": {"secretRef": {"name": "crm-secret"}},
            "headers": {"X-Tenant": "shop"},
        },
    )
    created = await create_event(standin, "order-1001", {"type": "order.created", "data": {"orderId": 1001}})
    event = await wait_condition(standin, "webhookevents", "order-1001", "Delivered", "True", "AllDelivered")

    [request] = receiver.at("/hooks/orders")
    assert json.loads(request.body) == {
        "type": "order.created",
        "timestamp": created["metadata"]["creationTimestamp"],
        "data": {"orderId": 1001},
    }
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["webhook-id"] == created["metadata"]["uid"]
    assert request.headers["X-Tenant"] == "shop"
    assert request.headers["User-Agent"].startswith("webhook-operator/")
    assert Webhook(signing_key).verify(request.body, request.headers) == json.loads(request.body)

    entry = delivery(event, "orders")
    assert entry["state"] == "Succeeded"
    assert entry["attempts"] == 1
    assert entry["lastStatusCode"] == 200
    assert event["status"]["succeeded"] == 1
    assert event["status"]["pending"] == 0
    assert event["metadata"]["namespace"] == NAMESPACE


async def test_an_event_costs_one_status_write(standin, receiver, operator):
    await create_subscription(standin, "orders", {"url": receiver.endpoint("/hooks/orders")})
    await wait_condition(standin, "webhooksubscriptions", "orders", "Ready")
    await create_event(standin, "order-1", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "order-1", "Delivered")

    async def settled():
        return receiver.at("/hooks/orders")

    await eventually(settled)
    assert standin.count("patch", resource="webhookevents", subresource="status") == 1
    assert standin.count("patch", resource="webhookevents", subresource="") == 0

"""The CloudEvents format: binary content mode, parsed by the official cloudevents SDK."""

from __future__ import annotations

import json

from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from standardwebhooks.webhooks import Webhook

from tests.integration.conftest import create_event, create_secret, create_subscription, wait_condition
from webhook_operator.domain.clock import parse_time


def parse(request):
    """The official SDK's parser, as a receiver would call it (binary mode is detected from ce- headers)."""
    return from_http_event(HTTPMessage(headers=dict(request.headers), body=request.body))


async def test_a_cloudevents_subscription_receives_a_binary_mode_event_the_sdk_parses(
    standin, receiver, operator
):
    await create_subscription(standin, "ce", {"url": receiver.endpoint("/ce"), "format": "CloudEvents"})
    await wait_condition(standin, "webhooksubscriptions", "ce", "Ready")
    created = await create_event(
        standin,
        "inv-1",
        {"type": "invoice.paid", "data": {"invoiceId": 7, "amount": 12.5}, "source": "/shop/billing"},
    )
    await wait_condition(standin, "webhookevents", "inv-1", "Delivered")

    [request] = receiver.at("/ce")
    event = parse(request)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == created["metadata"]["uid"]
    assert event.get_type() == "invoice.paid"
    assert event.get_source() == "/shop/billing"
    assert event.get_time() == parse_time(created["metadata"]["creationTimestamp"])
    assert event.get_data() == {"invoiceId": 7, "amount": 12.5}
    assert "webhook-signature" not in request.headers  # unsigned without spec.signing


async def test_a_cloudevent_without_a_source_names_the_event_resource(standin, receiver, operator):
    await create_subscription(standin, "ce", {"url": receiver.endpoint("/ce"), "format": "CloudEvents"})
    await wait_condition(standin, "webhooksubscriptions", "ce", "Ready")
    await create_event(standin, "inv-2", {"type": "invoice.paid", "data": {}})
    await wait_condition(standin, "webhookevents", "inv-2", "Delivered")
    [request] = receiver.at("/ce")
    assert parse(request).get_source() == (
        "/apis/webhooks.openplatform.dev/v1alpha1/namespaces/shop/webhookevents/inv-2"
    )


async def test_a_signed_cloudevent_carries_standard_webhooks_signatures_over_its_body(
    standin, receiver, operator, signing_key
):
    await create_secret(standin, "key", {"signingKey": signing_key})
    await create_subscription(
        standin,
        "ce",
        {"url": receiver.endpoint("/ce"), "format": "CloudEvents", "signing": {"secretRef": {"name": "key"}}},
    )
    await wait_condition(standin, "webhooksubscriptions", "ce", "Ready")
    await create_event(standin, "inv-3", {"type": "invoice.paid", "data": {"n": 1}})
    await wait_condition(standin, "webhookevents", "inv-3", "Delivered")
    [request] = receiver.at("/ce")
    assert Webhook(signing_key).verify(request.body, request.headers) == {"n": 1}
    assert json.loads(request.body) == parse(request).get_data()

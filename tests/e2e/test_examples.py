"""examples/ applied as a user would (adapted to a fresh namespace and the test's receiver), then
delivered by the real operator, signed, and reported through kubectl: wait, get, categories.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from standardwebhooks.webhooks import Webhook

from tests.e2e.cluster import Kubectl, condition, example_documents, example_signing_key
from tests.e2e.conftest import Operator, examples_for
from tests.e2e.receiver import Receiver, wait_for_requests

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# Where each example event should go (None: it matches no subscription).
ROUTES = {
    "order-1001-created": "orders-to-crm",
    "order-1001-shipped": "orders-to-crm",
    "invoice-2001-paid": "invoices-to-billing",
    "product-42-updated": None,
}
PATHS = {"orders-to-crm": "/hooks/orders", "invoices-to-billing": "/hooks/invoices"}


def names_of(kind: str) -> list[str]:
    return [doc["metadata"]["name"] for doc in example_documents() if doc["kind"] == kind]


@pytest.fixture
def examples(kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator) -> dict[str, Any]:
    """examples/ applied in `namespace` with `kubectl apply -f -`; waits for Ready and Delivered."""
    # The expectations below are about these exact examples: say so if they change.
    assert sorted(names_of("WebhookEvent")) == sorted(ROUTES), "examples/ changed: update ROUTES"
    assert sorted(names_of("WebhookSubscription")) == sorted(PATHS), "examples/ changed: update PATHS"

    kubectl.apply(examples_for(namespace, receiver))
    for name in PATHS:
        kubectl.wait("--for=condition=Ready", f"whsub/{name}", "-n", namespace, timeout=90)
    for name in ROUTES:
        kubectl.wait("--for=condition=Delivered", f"whev/{name}", "-n", namespace, timeout=120)
    events = kubectl.json("webhookevents", "-n", namespace)["items"]
    return {event["metadata"]["name"]: event for event in events}


def same_instant(rfc3339: str, other: str) -> bool:
    return datetime.fromisoformat(rfc3339) == datetime.fromisoformat(other)


def test_example_orders_arrive_as_signed_standard_webhooks(
    examples: dict[str, Any], receiver: Receiver
) -> None:
    webhook = Webhook(example_signing_key())
    by_uid = {event["metadata"]["uid"]: event for event in examples.values()}
    expected = {examples[name]["metadata"]["uid"] for name, sub in ROUTES.items() if sub == "orders-to-crm"}

    requests = wait_for_requests(receiver, PATHS["orders-to-crm"], len(expected))

    assert {request.headers["webhook-id"] for request in requests} == expected
    assert len(requests) == len(expected), "one request per event, no duplicates"
    for request in requests:
        payload = webhook.verify(request.body, request.headers)  # raises unless the signature verifies
        event = by_uid[request.headers["webhook-id"]]
        assert request.method == "POST"
        assert request.headers["content-type"].startswith("application/json")
        assert request.headers["x-tenant"] == "shop"  # the example's static header
        assert request.headers["user-agent"].startswith("webhook-operator/")
        assert set(payload) == {"type", "timestamp", "data"}
        assert payload["type"] == event["spec"]["type"]
        assert payload["data"] == event["spec"]["data"]
        assert same_instant(payload["timestamp"], event["metadata"]["creationTimestamp"])


def test_example_invoice_arrives_as_a_signed_binary_cloudevent(
    examples: dict[str, Any], receiver: Receiver
) -> None:
    invoice = examples["invoice-2001-paid"]

    (request,) = wait_for_requests(receiver, PATHS["invoices-to-billing"], 1)
    cloud_event = from_http_event(HTTPMessage(headers=request.headers, body=request.body))

    assert cloud_event.get_specversion() == "1.0"
    assert cloud_event.get_id() == invoice["metadata"]["uid"]
    assert cloud_event.get_type() == "invoice.paid"
    assert cloud_event.get_source() == invoice["spec"]["source"]
    assert cloud_event.get_time() == datetime.fromisoformat(invoice["metadata"]["creationTimestamp"])
    assert cloud_event.get_data() == invoice["spec"]["data"]
    # Signed like a Standard Webhook, over the raw body.
    assert Webhook(example_signing_key()).verify(request.body, request.headers) == invoice["spec"]["data"]


def test_example_events_report_their_deliveries_in_status(examples: dict[str, Any]) -> None:
    for name, subscription in ROUTES.items():
        status = examples[name]["status"]
        delivered = condition(examples[name], "Delivered")
        assert delivered is not None
        assert delivered["status"] == "True"
        if subscription is None:
            assert delivered["reason"] == "NoSubscriptions"
            assert not status.get("deliveries")
            continue
        (delivery,) = status["deliveries"]
        assert delivery["subscription"] == subscription
        assert delivery["state"] == "Succeeded"
        assert delivery["attempts"] >= 1
        assert delivery["lastStatusCode"] == 200
        assert status["succeeded"] == 1
        assert status.get("failed", 0) == 0
        assert status.get("pending", 0) == 0


def test_kubectl_get_shows_the_printer_columns(
    kubectl: Kubectl, namespace: str, examples: dict[str, Any]
) -> None:
    # Subscription counts reach the status within the operator's health flush (5 s by default).
    kubectl.wait(
        "--for=jsonpath={.status.deliveredCount}=2", "whsub/orders-to-crm", "-n", namespace, timeout=60
    )
    url = kubectl.json("whsub/orders-to-crm", "-n", namespace)["spec"]["url"]

    lines = kubectl("get", "whsub", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "URL", "READY", "DELIVERED", "FAILED", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["orders-to-crm"][1:4] == [url, "True", "2"]
    assert rows["invoices-to-billing"][2] == "True"

    lines = kubectl("get", "whev", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "DELIVERED", "FAILED", "PENDING", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["order-1001-created"][1:3] == ["order.created", "True"]
    assert rows["product-42-updated"][1:3] == ["product.updated", "True"]


def test_kubectl_get_webhooks_lists_both_kinds(
    kubectl: Kubectl, namespace: str, examples: dict[str, Any]
) -> None:
    listed = set(kubectl("get", "webhooks", "-n", namespace, "-o", "name").stdout.split())
    assert listed == {f"webhooksubscription.webhooks.openplatform.dev/{name}" for name in PATHS} | {
        f"webhookevent.webhooks.openplatform.dev/{name}" for name in ROUTES
    }

"""Delivery behaviour on a real cluster beyond the examples: retries and tenant isolation."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import make_signing_key
from tests.e2e.cluster import Kubectl, condition
from tests.e2e.conftest import Operator
from tests.e2e.receiver import Receiver, wait_for_requests

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

API_VERSION = "webhooks.openplatform.dev/v1alpha1"


def signing_secret(namespace: str, name: str, key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"signingKey": base64.b64encode(key.encode()).decode()},
    }


def subscription(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WebhookSubscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def event(namespace: str, name: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WebhookEvent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": type_, "data": data},
    }


def test_a_delivery_answered_503_is_retried_until_the_receiver_answers_200(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    key = make_signing_key()
    path = "/flaky?fail=2&status=503"  # the receiver answers 503, 503, then 200
    kubectl.apply(
        [
            signing_secret(namespace, "signing", key),
            subscription(
                namespace,
                "flaky",
                url=receiver.url(path),
                eventTypes=["order.*"],
                signing={"secretRef": {"name": "signing"}},
                retry={"maxAttempts": 5, "backoff": "Linear", "initialDelaySeconds": 1, "maxDelaySeconds": 2},
            ),
        ]
    )
    kubectl.wait("--for=condition=Ready", "whsub/flaky", "-n", namespace)
    kubectl.apply([event(namespace, "order-7", "order.created", {"orderId": 7})])

    kubectl.wait("--for=condition=Delivered", "whev/order-7", "-n", namespace, timeout=120)

    created = kubectl.json("whev/order-7", "-n", namespace)
    requests = wait_for_requests(receiver, path, 3)
    assert [request.status for request in requests] == [503, 503, 200]
    # One event, one id across every retry; each attempt signed afresh.
    assert {request.headers["webhook-id"] for request in requests} == {created["metadata"]["uid"]}
    for request in requests:
        assert Webhook(key).verify(request.body, request.headers) is not None
    (delivery,) = created["status"]["deliveries"]
    assert delivery["state"] == "Succeeded"
    assert delivery["attempts"] >= 3
    assert delivery["lastStatusCode"] == 200
    failed = condition(created, "Failed")
    assert failed is None or failed["status"] == "False"


def test_a_delivery_that_keeps_failing_ends_failed_after_max_attempts(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    path = "/down?fail=100&status=503"
    kubectl.apply(
        [
            subscription(
                namespace,
                "down",
                url=receiver.url(path),
                retry={"maxAttempts": 2, "backoff": "Linear", "initialDelaySeconds": 1, "maxDelaySeconds": 1},
            ),
            event(namespace, "order-8", "order.created", {"orderId": 8}),
        ]
    )

    kubectl.wait("--for=condition=Failed", "whev/order-8", "-n", namespace, timeout=120)

    assert [request.status for request in wait_for_requests(receiver, path, 2)] == [503, 503]
    created = kubectl.json("whev/order-8", "-n", namespace)
    (delivery,) = created["status"]["deliveries"]
    assert delivery["state"] == "Failed"
    assert delivery["lastStatusCode"] == 503
    delivered = condition(created, "Delivered")
    assert delivered is not None
    assert delivered["status"] == "False"


def test_an_event_is_only_delivered_to_subscriptions_of_its_own_namespace(
    kubectl: Kubectl,
    namespace: str,
    new_namespace: Callable[[], str],
    receiver: Receiver,
    operator: Operator,
) -> None:
    other = new_namespace()
    kubectl.apply(
        [subscription(namespace, "all-orders", url=receiver.url("/tenant"), eventTypes=["order.*"])]
    )
    kubectl.wait("--for=condition=Ready", "whsub/all-orders", "-n", namespace)

    kubectl.apply([event(other, "order-elsewhere", "order.created", {"tenant": "other"})])
    kubectl.apply([event(namespace, "order-here", "order.created", {"tenant": "mine"})])
    kubectl.wait("--for=condition=Delivered", "whev/order-here", "-n", namespace)
    kubectl.wait("--for=condition=Delivered", "whev/order-elsewhere", "-n", other)

    elsewhere = kubectl.json("whev/order-elsewhere", "-n", other)
    here = kubectl.json("whev/order-here", "-n", namespace)
    (request,) = wait_for_requests(receiver, "/tenant", 1)
    assert request.headers["webhook-id"] == here["metadata"]["uid"]
    assert request.json()["data"] == {"tenant": "mine"}
    delivered = condition(elsewhere, "Delivered")
    assert delivered is not None
    assert delivered["reason"] == "NoSubscriptions"

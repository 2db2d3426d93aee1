"""Delivery options on a real API server: ordering per key and rate limits, with the CRD's
own rules enforced by the API server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.cluster import Kubectl, KubectlError, eventually
from tests.e2e.conftest import Operator
from tests.e2e.receiver import Receiver, wait_for_requests
from tests.e2e.test_delivery import subscription

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

API_VERSION = "webhooks.openplatform.dev/v1alpha1"
# The head retries 4 s apart: time for the test to look at the waiting events in between.
QUICK_RETRY = {"maxAttempts": 5, "backoff": "Linear", "initialDelaySeconds": 4, "maxDelaySeconds": 4}


def event(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WebhookEvent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "order.updated", "data": {"name": name}, **spec},
    }


def uid(kubectl: Kubectl, namespace: str, name: str) -> str:
    return str(kubectl.json(f"whev/{name}", "-n", namespace)["metadata"]["uid"])


def delivery_reason(kubectl: Kubectl, namespace: str, name: str) -> str | None:
    status = kubectl.json(f"whev/{name}", "-n", namespace).get("status") or {}
    entries = status.get("deliveries") or [{}]
    reason = entries[0].get("reason")
    return str(reason) if reason is not None else None


def test_events_of_one_key_arrive_in_creation_order_while_the_first_fails_twice_and_another_key_flows(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    path = "/ordered?fail=2&status=503"  # the first two requests (the head's first two attempts) fail
    kubectl.apply(
        [subscription(namespace, "ordered", url=receiver.url(path), ordering="PerKey", retry=QUICK_RETRY)]
    )
    kubectl.wait("--for=condition=Ready", "whsub/ordered", "-n", namespace)
    # Created one after another, in this order; the names run the other way round.
    names = ["e5-first", "e4-second", "e3-third", "e2-fourth", "e1-fifth"]
    kubectl.apply([event(namespace, name, orderingKey="order-1") for name in names])

    wait_for_requests(receiver, path, 2)
    assert delivery_reason(kubectl, namespace, "e4-second") == "WaitingForPredecessor"
    wide = kubectl("get", "whev", "-n", namespace, "-o", "wide").stdout
    assert "KEY" in wide.splitlines()[0] and "order-1" in wide
    # While the head of order-1 waits for its third attempt, an event of another key goes out.
    kubectl.apply([event(namespace, "other-key", orderingKey="order-2")])
    kubectl.wait("--for=condition=Delivered", "whev/other-key", "-n", namespace, timeout=60)
    for name in names:
        kubectl.wait("--for=condition=Delivered", f"whev/{name}", "-n", namespace, timeout=120)

    uids = [uid(kubectl, namespace, name) for name in names]
    requests = wait_for_requests(receiver, path, 8)
    arrived = [request.headers["webhook-id"] for request in requests]
    assert arrived == [uids[0], uids[0], uid(kubectl, namespace, "other-key"), *uids]
    assert [request.status for request in requests] == [503, 503] + [200] * 6
    recorded = kubectl.json("whev/e5-first", "-n", namespace)["status"]
    assert recorded["creationResourceVersion"].isdigit()


def test_a_five_per_second_limit_keeps_the_receiver_at_five_requests_a_second(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    path = "/limited"
    kubectl.apply(
        [subscription(namespace, "limited", url=receiver.url(path), rateLimit={"requestsPerSecond": 5})]
    )
    kubectl.wait("--for=condition=Ready", "whsub/limited", "-n", namespace)
    names = [f"burst-{i:02d}" for i in range(20)]
    kubectl.apply([event(namespace, name, type="order.created") for name in names])

    def one_waits_for_a_token() -> bool:
        listed = kubectl.json("whev", "-n", namespace)["items"]
        return any(
            entry.get("reason") == "RateLimited"
            for item in listed
            for entry in (item.get("status") or {}).get("deliveries") or []
        )

    eventually(
        one_waits_for_a_token, timeout=30, interval=0.3, what="a delivery waiting with reason RateLimited"
    )
    for name in names:
        kubectl.wait("--for=condition=Delivered", f"whev/{name}", "-n", namespace, timeout=120)
    times = [request.at for request in wait_for_requests(receiver, path, 20)]
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 4.0 <= rate <= 5.3, f"{rate:.2f} requests/s"
    # The bucket grants at most burst + 5 tokens in any second; each request leaves when its
    # event's reconcile gets to it, a little late under load, so allow two more at the receiver.
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 8, f"{busiest} requests within one second"


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ({"requestsPerSecond": 0}, "rateLimit.requestsPerSecond must be greater than 0"),
        ({"requestsPerSecond": 5, "burst": 0}, "rateLimit.burst must be at least 1"),
    ],
)
def test_the_api_server_refuses_a_rate_limit_that_could_never_send(
    kubectl: Kubectl, namespace: str, limit: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(
            [subscription(namespace, "never", url="https://crm.example.com/hooks", rateLimit=limit)]
        )
    assert message in str(refused.value)

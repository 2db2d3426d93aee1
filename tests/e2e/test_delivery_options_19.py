"""Delivery options on the real API server: payload filters, v1a signatures, the key-length rule
and bulk recovery with recover-since. The CRDs are the ones in crds/, so the API server's own
validation and defaulting apply (an omitted retry, for one, stays omitted)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
from typing import Any

import pytest

from tests.e2e.cluster import Kubectl, KubectlError, condition, eventually
from tests.e2e.conftest import Operator
from tests.e2e.receiver import Receiver, wait_for_requests
from tests.e2e.test_delivery import event, signing_secret, subscription
from tests.standard_webhooks_v1a import verify_v1a

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

RECOVER_SINCE = "webhooks.openplatform.dev/recover-since"


def ready(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return condition(kubectl.json(f"whsub/{name}", "-n", namespace), "Ready") or {}


def apply_signed(kubectl: Kubectl, namespace: str, name: str, url: str, key: str) -> None:
    """A subscription signing with `key`, from a Secret of the same name."""
    kubectl.apply(
        [
            signing_secret(namespace, name, key),
            subscription(namespace, name, url=url, signing={"secretRef": {"name": name}}),
        ]
    )


def test_a_filter_delivers_only_matching_events_and_a_bad_filter_is_invalid_spec(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    kubectl.apply(
        [
            subscription(namespace, "big-orders", url=receiver.url("/big"), filter="data.amount > 100"),
            subscription(namespace, "broken", url=receiver.url("/broken"), filter="data.amount >"),
        ]
    )
    kubectl.wait("--for=condition=Ready", "whsub/big-orders", "-n", namespace)
    broken = eventually(
        lambda: (c := ready(kubectl, namespace, "broken")).get("reason") == "InvalidSpec" and c,
        what="whsub/broken Ready=False InvalidSpec",
    )
    assert broken["status"] == "False"
    assert "spec.filter does not compile" in broken["message"]

    kubectl.apply(
        [
            event(namespace, f"order-{amount}", "order.created", {"amount": amount})
            for amount in (50, 150, 99, 101)
        ]
    )
    for amount in (50, 150, 99, 101):
        kubectl.wait("--for=condition=Delivered", f"whev/order-{amount}", "-n", namespace, timeout=120)
    time.sleep(1)  # nothing more is on its way: every event is Delivered
    delivered = sorted(request.json()["data"]["amount"] for request in receiver.requests("/big"))
    assert delivered == [101, 150]
    assert receiver.requests("/broken") == []
    assert kubectl.json("whev/order-50", "-n", namespace)["status"]["deliveries"] == []


def test_a_v1a_signature_verifies_with_the_public_key_from_status(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    key = "whsk_" + base64.b64encode(os.urandom(32)).decode()
    apply_signed(kubectl, namespace, "signed", receiver.url("/signed"), key)
    kubectl.wait("--for=condition=Ready", "whsub/signed", "-n", namespace)
    public_keys = eventually(
        lambda: kubectl.json("whsub/signed", "-n", namespace)["status"].get("signing", {}).get("publicKeys"),
        what="status.signing.publicKeys",
    )
    assert len(public_keys) == 1 and public_keys[0].startswith("whpk_")
    kubectl.apply([event(namespace, "order-1", "order.created", {"orderId": 1})])
    kubectl.wait("--for=condition=Delivered", "whev/order-1", "-n", namespace, timeout=120)
    [request] = wait_for_requests(receiver, "/signed", 1)
    assert request.headers["webhook-signature"].startswith("v1a,")
    verify_v1a(public_keys[0], request.body, request.headers)


def test_a_16_byte_symmetric_key_is_invalid_secret(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    short = "whsec_" + base64.b64encode(os.urandom(16)).decode()
    apply_signed(kubectl, namespace, "weak", receiver.url("/weak"), short)
    found = eventually(
        lambda: (c := ready(kubectl, namespace, "weak")).get("reason") == "InvalidSecret" and c,
        what="whsub/weak Ready=False InvalidSecret",
    )
    assert "decodes to 16 bytes" in found["message"] and "at least 24" in found["message"]
    assert short.removeprefix("whsec_") not in found["message"]


def test_an_omitted_retry_stays_omitted_on_the_api_server(
    kubectl: Kubectl, namespace: str, receiver: Receiver
) -> None:
    kubectl.apply([subscription(namespace, "defaults", url=receiver.url("/d"))])
    stored = kubectl.json("whsub/defaults", "-n", namespace)["spec"]
    assert "retry" not in stored  # the operator's default then: the Standard Webhooks schedule
    kubectl.apply([subscription(namespace, "explicit", url=receiver.url("/e"), retry={})])
    assert kubectl.json("whsub/explicit", "-n", namespace)["spec"]["retry"] == {
        "maxAttempts": 8,
        "backoff": "Exponential",
        "initialDelaySeconds": 5,
        "maxDelaySeconds": 3600,
    }


def test_the_api_server_refuses_an_empty_filter(kubectl: Kubectl, namespace: str, receiver: Receiver) -> None:
    with pytest.raises(KubectlError) as refused:
        kubectl.apply([subscription(namespace, "empty", url=receiver.url("/x"), filter="")])
    assert "spec.filter" in str(refused.value)


def test_recover_since_redelivers_exactly_the_failed_deliveries_since_that_time(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    path = "/recover?fail=3&status=500"  # three failures, then 200
    kubectl.apply([subscription(namespace, "flaky", url=receiver.url(path), retry={"maxAttempts": 1})])
    kubectl.wait("--for=condition=Ready", "whsub/flaky", "-n", namespace)
    kubectl.apply([event(namespace, "before", "order.created", {"n": 0})])
    kubectl.wait("--for=condition=Failed", "whev/before", "-n", namespace, timeout=120)
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    since = dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ("after-1", "after-2"):
        kubectl.apply([event(namespace, name, "order.created", {"n": name})])
        kubectl.wait("--for=condition=Failed", f"whev/{name}", "-n", namespace, timeout=120)
    assert len(wait_for_requests(receiver, path, 3)) == 3

    kubectl("annotate", "whsub/flaky", "-n", namespace, f"{RECOVER_SINCE}={since}")

    for name in ("after-1", "after-2"):
        kubectl.wait("--for=condition=Delivered", f"whev/{name}", "-n", namespace, timeout=120)
        (delivery,) = kubectl.json(f"whev/{name}", "-n", namespace)["status"]["deliveries"]
        assert delivery["state"] == "Succeeded"
    recovery = eventually(
        lambda: kubectl.json("whsub/flaky", "-n", namespace)["status"].get("recovery"),
        what="status.recovery",
    )
    assert recovery["since"] == since and recovery["redelivered"] == 2
    (left,) = kubectl.json("whev/before", "-n", namespace)["status"]["deliveries"]
    assert left["state"] == "Failed"  # created before that time
    time.sleep(1)
    assert [r.status for r in receiver.requests(path)] == [500, 500, 500, 200, 200]

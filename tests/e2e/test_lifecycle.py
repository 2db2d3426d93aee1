"""What a user does after the first delivery, on a real API server: read `kubectl describe`,
fix a missing Secret, replay a failed event, let finished events expire, restart the operator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_signing_key
from tests.e2e.cluster import Kubectl, condition, normalized
from tests.e2e.conftest import (
    IN_CLUSTER,
    Namespaces,
    Operator,
    service_account_kubeconfig,
    start_local_operator,
)
from tests.e2e.receiver import Receiver, ReceiverView, wait_for_requests
from tests.e2e.test_delivery import event, signing_secret, subscription

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_describe_names_a_missing_secret_and_ready_follows_when_it_is_created(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    kubectl.apply(
        [
            subscription(
                namespace, "signed", url=receiver.url("/signed"), signing={"secretRef": {"name": "later"}}
            )
        ]
    )
    kubectl.wait("--for=condition=Ready=False", "whsub/signed", "-n", namespace, timeout=60)
    described = normalized(kubectl("describe", "whsub/signed", "-n", namespace).stdout)
    assert "SecretNotFound" in described
    assert "later" in described  # the message names the Secret to create

    kubectl.apply([signing_secret(namespace, "later", make_signing_key())])
    kubectl.wait("--for=condition=Ready", "whsub/signed", "-n", namespace, timeout=60)
    ready = condition(kubectl.json("whsub/signed", "-n", namespace), "Ready")
    assert ready is not None
    assert ready["reason"] == "Active"


def test_the_redeliver_annotation_replays_a_failed_delivery(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    path = "/once?fail=1&status=400"  # 400 fails the delivery at once; the replay gets 200
    kubectl.apply(
        [
            subscription(namespace, "strict", url=receiver.url(path)),
            event(namespace, "order-9", "order.created", {"orderId": 9}),
        ]
    )
    kubectl.wait("--for=condition=Failed", "whev/order-9", "-n", namespace, timeout=60)

    kubectl("annotate", "whev/order-9", "-n", namespace, "webhooks.openplatform.dev/redeliver=1")
    kubectl.wait("--for=condition=Delivered", "whev/order-9", "-n", namespace, timeout=60)

    requests = wait_for_requests(receiver, path, 2)
    assert [request.status for request in requests] == [400, 200]
    assert len({request.headers["webhook-id"] for request in requests}) == 1
    failed = condition(kubectl.json("whev/order-9", "-n", namespace), "Failed")
    assert failed is not None
    assert failed["status"] == "False"


def test_a_finished_event_is_deleted_after_its_ttl(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    short_lived = event(namespace, "order-10", "order.created", {"orderId": 10})
    short_lived["spec"]["ttlSecondsAfterFinished"] = 2
    kubectl.apply([subscription(namespace, "all", url=receiver.url("/ttl")), short_lived])
    kubectl.wait("--for=condition=Delivered", "whev/order-10", "-n", namespace, timeout=60)
    kubectl.wait("--for=delete", "whev/order-10", "-n", namespace, timeout=60)
    assert len(receiver.requests("/ttl")) == 1


@pytest.mark.skipif(IN_CLUSTER, reason="restarts an operator of its own on this machine")
def test_a_restarted_operator_resumes_a_retry_from_the_status_it_wrote(
    kubectl: Kubectl, own_namespaces: Namespaces, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The next attempt time lives in the event's status: a new process takes it from there."""
    namespace = own_namespaces.create("restart")
    receiver = ReceiverView(request.getfixturevalue("_local_receiver"), prefix=namespace)
    path = "/later?fail=1&status=503"
    kubectl.apply(
        [
            subscription(
                namespace,
                "flaky",
                url=receiver.url(path),
                retry={"maxAttempts": 3, "backoff": "Linear", "initialDelaySeconds": 4, "maxDelaySeconds": 4},
            ),
            event(namespace, "order-11", "order.created", {"orderId": 11}),
        ]
    )
    account = service_account_kubeconfig(kubectl, tmp_path)
    first = start_local_operator(["--namespace", namespace], tmp_path / "first.log", kubeconfig=account)
    try:
        wait_for_requests(receiver, path, 1)
        retrying = kubectl.json("whev/order-11", "-n", namespace)
        (delivery,) = retrying["status"]["deliveries"]
        assert delivery["state"] == "Retrying"
        assert delivery["nextAttemptTime"]
    finally:
        first.stop()
    assert first.process.returncode == 0

    second = start_local_operator(["--namespace", namespace], tmp_path / "second.log", kubeconfig=account)
    try:
        kubectl.wait("--for=condition=Delivered", "whev/order-11", "-n", namespace, timeout=60)
    finally:
        second.stop()
    requests = wait_for_requests(receiver, path, 2)
    assert [r.status for r in requests] == [503, 200]
    assert requests[1].at - requests[0].at >= 3.5  # the backoff held across the restart
    (delivery,) = kubectl.json("whev/order-11", "-n", namespace)["status"]["deliveries"]
    assert delivery["state"] == "Succeeded"
    assert delivery["attempts"] == 2

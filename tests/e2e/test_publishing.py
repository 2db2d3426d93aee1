"""Publishing events on a real cluster: the CLI, the kubectl plugin, the Python client and the
Python and Node example producers, each idempotent by key; `--wait` exit codes; bad input
creates nothing; replay and gen-secret."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.e2e.cluster import REPO, Kubectl
from tests.e2e.conftest import Operator, deploy_rbac, token_kubeconfig
from tests.e2e.receiver import Receiver, wait_for_requests
from tests.standard_webhooks_v1a import verify_v1a
from webhook_operator.client import AsyncPublisher, Publisher, name_for_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

API_VERSION = "webhooks.openplatform.dev/v1alpha1"
BIN = Path(sys.executable).parent  # the venv's: webhook-operator and kubectl-webhooks live here
NODE_KIT = REPO / "examples" / "publishers" / "node"
PYTHON_KIT = REPO / "examples" / "publishers" / "python" / "publish_order.py"


def run(
    *command: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, env=env or plugin_env()
    )


def plugin_env() -> dict[str, str]:
    """The environment with the venv's bin first on PATH, as after activating it: kubectl finds
    the `kubectl-webhooks` plugin there."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def publish(*arguments: str) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "webhook-operator"), "publish", *arguments)


def subscription(namespace: str, name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WebhookSubscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"url": url, **spec},
    }


def events(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    return list(kubectl.json("whev", "-n", namespace)["items"])


def subscribed(kubectl: Kubectl, namespace: str, name: str, url: str, **spec: Any) -> None:
    kubectl.apply([subscription(namespace, name, url, **spec)])
    kubectl.wait("--for=condition=Ready", f"whsub/{name}", "-n", namespace)


def test_the_same_key_published_twice_is_one_event_and_one_delivery(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    subscribed(kubectl, namespace, "orders", receiver.url("/orders"), eventTypes=["order.*"])
    arguments = ("order.created", "-n", namespace, "--data", '{"orderId": 1001}', "--key", "order-1001")

    first = publish(*arguments, "--wait", "--timeout", "60")
    second = publish(*arguments, "--wait", "--timeout", "60")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    name = first.stdout.strip()
    assert name == second.stdout.strip() == name_for_key("order-1001")
    assert "already published" in second.stderr
    assert "Delivered" in first.stderr
    (event,) = events(kubectl, namespace)
    (request,) = wait_for_requests(receiver, "/orders", 1)
    assert request.headers["webhook-id"] == event["metadata"]["uid"]
    assert request.json()["data"] == {"orderId": 1001}
    time.sleep(3)  # a second delivery would have been sent by now
    assert len(receiver.requests("/orders")) == 1


def test_the_same_key_with_other_data_is_refused_and_the_first_event_kept(
    kubectl: Kubectl, namespace: str, operator: Operator
) -> None:
    assert publish("order.created", "-n", namespace, "--data", '{"orderId": 1}', "--key", "k").returncode == 0

    refused = publish("order.created", "-n", namespace, "--data", '{"orderId": 2}', "--key", "k")

    assert refused.returncode == 3
    assert "already used" in refused.stderr
    assert "data" in refused.stderr
    (event,) = events(kubectl, namespace)
    assert event["spec"]["data"] == {"orderId": 1}


def test_wait_exits_0_when_delivered_1_when_failed_and_2_on_timeout(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    subscribed(kubectl, namespace, "ok", receiver.url("/ok"), eventTypes=["good.*"])
    subscribed(
        kubectl,
        namespace,
        "down",
        receiver.url("/down?fail=100&status=503"),
        eventTypes=["bad.*"],
        retry={"maxAttempts": 2, "backoff": "Linear", "initialDelaySeconds": 1, "maxDelaySeconds": 1},
    )
    kubectl.apply(
        [subscription(namespace, "paused", receiver.url("/paused"), eventTypes=["held.*"], paused=True)]
    )

    delivered = publish("good.thing", "-n", namespace, "--wait", "--timeout", "90")
    failed = publish("bad.thing", "-n", namespace, "--wait", "--timeout", "90")
    started = time.monotonic()
    timed_out = publish("held.thing", "-n", namespace, "--wait", "--timeout", "3")
    waited = time.monotonic() - started

    assert delivered.returncode == 0, delivered.stderr
    assert failed.returncode == 1, failed.stderr
    assert "Failed" in failed.stderr
    assert "down: Failed after 2 attempt(s), HTTP 503" in failed.stderr
    assert timed_out.returncode == 2, timed_out.stderr
    assert "timed out" in timed_out.stderr
    assert 3 <= waited < 30
    assert len(events(kubectl, namespace)) == 3


def test_bad_input_exits_2_naming_the_problem_and_creates_nothing(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    too_big = tmp_path / "big.json"
    too_big.write_text(json.dumps({"blob": "x" * 300_000}))
    cases = {
        "must be a JSON object": ("order.created", "--data", "[1, 2]"),
        "not valid JSON": ("order.created", "--data", "{orderId: 1}"),
        "the limit is 262144 bytes": ("order.created", "--data-file", str(too_big)),
        "not a valid event type": ("order created", "--data", "{}"),
        "not a valid Kubernetes object name": ("order.created", "--subscription", "Not_A_Name"),
        "ttl_seconds": ("order.created", "--ttl", "-5"),
    }
    for problem, arguments in cases.items():
        result = publish(*arguments, "-n", namespace)
        assert result.returncode == 2, (arguments, result.stderr)
        assert problem in result.stderr, (arguments, result.stderr)
        assert result.stdout == ""
    # Checked before any request: with no cluster configured at all, the answer is the same.
    nowhere = {**plugin_env(), "KUBECONFIG": str(tmp_path / "missing-kubeconfig")}
    offline = run(str(BIN / "webhook-operator"), "publish", "order.created", "--data", "[1]", env=nowhere)
    assert offline.returncode == 2
    assert "must be a JSON object" in offline.stderr
    assert events(kubectl, namespace) == []


def test_the_kubectl_plugin_runs_every_verb(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    plugin = shutil.which("kubectl-webhooks", path=plugin_env()["PATH"])
    assert plugin is not None, "kubectl-webhooks is not installed with the package"

    help_text = run(kubectl.binary, "webhooks")
    published = run(
        kubectl.binary, "webhooks", "publish", "order.created", "-n", namespace, "--key", "via-kubectl"
    )
    secret = run(kubectl.binary, "webhooks", "gen-secret", "from-kubectl", "-n", namespace)
    replayed = run(kubectl.binary, "webhooks", "replay", "-n", namespace, "--event", published.stdout.strip())

    assert help_text.returncode == 0
    assert "kubectl webhooks publish TYPE" in help_text.stdout
    assert published.returncode == 0, published.stderr
    assert published.stdout.strip() == name_for_key("via-kubectl")
    assert secret.returncode == 0, secret.stderr
    assert replayed.returncode == 0, replayed.stderr
    assert kubectl.json("secret/from-kubectl", "-n", namespace)["data"]["signingKey"]


def test_the_python_client_publishes_idempotently_and_waits_for_delivery(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    subscribed(kubectl, namespace, "invoices", receiver.url("/invoices"), eventTypes=["invoice.*"])
    with Publisher(namespace=namespace) as publisher:
        first = publisher.publish("invoice.paid", {"invoice": "A-1", "total": 12.5}, key="invoice-A-1-paid")
        again = publisher.publish("invoice.paid", {"invoice": "A-1", "total": 12.5}, key="invoice-A-1-paid")
        status = publisher.wait(first.name, timeout=60)

    assert (first.created, again.created) == (True, False)
    assert first.uid == again.uid
    assert status.outcome == "Delivered"
    assert [(d.subscription, d.state) for d in status.deliveries] == [("invoices", "Succeeded")]
    (request,) = wait_for_requests(receiver, "/invoices", 1)
    assert request.headers["webhook-id"] == first.uid


async def test_the_async_python_client_publishes_and_waits(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    kubectl.apply([subscription(namespace, "async", receiver.url("/async"))])
    async with AsyncPublisher(namespace=namespace) as publisher:
        published = [await publisher.publish("a.thing", {"n": n}, key=f"a-{n}") for n in range(3)]
        repeated = await publisher.publish("a.thing", {"n": 0}, key="a-0")
        statuses = [await publisher.wait(event.name, timeout=90) for event in published]

    assert repeated.uid == published[0].uid
    assert [status.outcome for status in statuses] == ["Delivered"] * 3
    assert len(events(kubectl, namespace)) == 3
    requests = wait_for_requests(receiver, "/async", 3)
    assert sorted(r.headers["webhook-id"] for r in requests) == sorted(e.uid for e in published)


def test_the_python_example_publishes_idempotently(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    subscribed(kubectl, namespace, "orders", receiver.url("/orders"), eventTypes=["order.created"])

    runs = [
        run(sys.executable, str(PYTHON_KIT), "42", "-n", namespace, "--amount", "9.5", "--wait")
        for _ in range(2)
    ]

    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["name"] == second["name"] == name_for_key("order-42-created")
    assert (first["created"], second["created"], first["outcome"]) == (True, False, "Delivered")
    (event,) = events(kubectl, namespace)
    assert event["spec"]["ttlSecondsAfterFinished"] == 7 * 86400
    assert len(wait_for_requests(receiver, "/orders", 1)) == 1


def test_the_node_example_publishes_idempotently_under_the_same_name_as_python(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_KIT / "node_modules" / "@kubernetes" / "client-node").is_dir():
        pytest.skip("node or the Node publisher's packages are missing (`make install` runs npm ci)")
    subscribed(kubectl, namespace, "orders", receiver.url("/orders"), eventTypes=["order.created"])
    script = str(NODE_KIT / "publish-order.mjs")

    runs = [run(node, script, "7", "--namespace", namespace, "--amount", "3.5") for _ in range(2)]
    conflicting = run(node, script, "7", "--namespace", namespace, "--amount", "4")

    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["name"] == second["name"] == name_for_key("order-7-created")
    assert (first["created"], second["created"]) == (True, False)
    assert conflicting.returncode == 1
    assert "already used" in conflicting.stderr
    # A Python producer with the same key and content finds the Node producer's event.
    with Publisher(namespace=namespace) as publisher:
        same = publisher.publish(
            "order.created", {"orderId": 7, "amount": 3.5}, key="order-7-created", source="/shop/orders"
        )
        assert publisher.wait(same.name, timeout=60).outcome == "Delivered"
    assert (same.uid, same.created) == (first["uid"], False)
    assert len(events(kubectl, namespace)) == 1
    time.sleep(2)
    (request,) = wait_for_requests(receiver, "/orders", 1)
    assert request.headers["webhook-id"] == first["uid"]


def test_replay_of_an_event_redelivers_its_failed_delivery(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    path = "/flaky?fail=1&status=500"  # the first request fails, every later one succeeds
    subscribed(kubectl, namespace, "flaky", receiver.url(path), retry={"maxAttempts": 1})
    published = publish("order.created", "-n", namespace, "--key", "replayed", "--wait", "--timeout", "60")
    assert published.returncode == 1, published.stderr
    name = published.stdout.strip()

    replayed = run(str(BIN / "webhook-operator"), "replay", "-n", namespace, "--event", name)

    assert replayed.returncode == 0, replayed.stderr
    assert "1 failed deliveries go back to Pending: flaky" in replayed.stderr
    kubectl.wait("--for=condition=Delivered", f"whev/{name}", "-n", namespace, timeout=60)
    assert [r.status for r in wait_for_requests(receiver, path, 2)] == [500, 200]


def test_replay_of_a_subscription_recovers_its_failed_deliveries_since_the_given_time(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    path = "/crm?fail=2&status=500"  # the first two requests fail, every later one succeeds
    subscribed(kubectl, namespace, "crm", receiver.url(path), retry={"maxAttempts": 1})
    failed = [publish("order.created", "-n", namespace, "--key", f"o-{n}", "--wait") for n in range(2)]
    assert [r.returncode for r in failed] == [1, 1], [r.stderr for r in failed]
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)

    result = run(
        str(BIN / "webhook-operator"), "replay", "-n", namespace, "--subscription", "crm", "--since", "2h"
    )
    missing = run(str(BIN / "webhook-operator"), "replay", "-n", namespace, "--subscription", "nope")

    assert result.returncode == 0, result.stderr
    annotations = kubectl.json("whsub/crm", "-n", namespace)["metadata"]["annotations"]
    since = dt.datetime.fromisoformat(annotations["webhooks.openplatform.dev/recover-since"])
    assert abs((before - dt.timedelta(hours=2)) - since) < dt.timedelta(seconds=30)
    for r in failed:
        kubectl.wait("--for=condition=Delivered", f"whev/{r.stdout.strip()}", "-n", namespace, timeout=60)
    assert [r.status for r in wait_for_requests(receiver, path, 4)] == [500, 500, 200, 200]
    assert missing.returncode == 4
    assert "not found" in missing.stderr


def test_gen_secret_creates_a_key_the_operator_signs_with(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    created = run(str(BIN / "webhook-operator"), "gen-secret", "signing", "-n", namespace)
    again = run(str(BIN / "webhook-operator"), "gen-secret", "signing", "-n", namespace)
    manifest = run(str(BIN / "webhook-operator"), "gen-secret", "gitops", "-n", namespace, "-o", "yaml")

    assert created.returncode == 0, created.stderr
    assert "whsec_" not in created.stdout + created.stderr, "the key is never printed"
    assert again.returncode == 3
    assert "already exists" in again.stderr
    assert manifest.returncode == 0
    assert "signingKey: whsec_" in manifest.stdout
    assert run(kubectl.binary, "get", "secret", "gitops", "-n", namespace).returncode != 0, (
        "-o yaml created it"
    )
    key = base64.b64decode(kubectl.json("secret/signing", "-n", namespace)["data"]["signingKey"]).decode()
    assert key.startswith("whsec_")
    assert len(base64.b64decode(key.removeprefix("whsec_"))) == 32
    subscribed(
        kubectl, namespace, "signed", receiver.url("/signed"), signing={"secretRef": {"name": "signing"}}
    )

    assert publish("order.created", "-n", namespace, "--data", '{"id": 1}', "--wait").returncode == 0

    (request,) = wait_for_requests(receiver, "/signed", 1)
    assert Webhook(key).verify(request.body, request.headers) == {
        "type": "order.created",
        "timestamp": request.json()["timestamp"],
        "data": {"id": 1},
    }


def test_gen_secret_asymmetric_key_signs_v1a_verifiable_with_the_printed_public_key(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    result = run(str(BIN / "webhook-operator"), "gen-secret", "ed", "-n", namespace, "--asymmetric")

    assert result.returncode == 0, result.stderr
    printed = result.stdout.split("public key: ")[1].strip()
    secret = kubectl.json("secret/ed", "-n", namespace)
    private = base64.b64decode(secret["data"]["signingKey"]).decode()
    seed = base64.b64decode(private.removeprefix("whsk_"))
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert printed == "whpk_" + base64.b64encode(public).decode()
    assert secret["metadata"]["annotations"]["webhooks.openplatform.dev/public-key"] == printed
    # The operator signs with it, and publishes the same public key for receivers to pin.
    subscribed(kubectl, namespace, "pinned", receiver.url("/pinned"), signing={"secretRef": {"name": "ed"}})
    assert kubectl.json("whsub/pinned", "-n", namespace)["status"]["signing"]["publicKeys"] == [printed]
    assert publish("order.created", "-n", namespace, "--data", '{"id": 2}', "--wait").returncode == 0
    (request,) = wait_for_requests(receiver, "/pinned", 1)
    verify_v1a(printed, request.body, request.headers)


# The contract's publisher role: create/get/list/watch webhookevents, nothing else.
PUBLISHER_RULES = [
    {
        "apiGroups": ["webhooks.openplatform.dev"],
        "resources": ["webhookevents"],
        "verbs": ["create", "get", "list", "watch"],
    }
]


def publisher_role_ref(kubectl: Kubectl, namespace: str) -> dict[str, str]:
    """deploy/'s ClusterRole webhook-operator-publisher when deploy/base ships it, else a Role
    with the rules the contract gives it: either way, only what an application is granted."""
    shipped = [
        o
        for o in deploy_rbac()
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "webhook-operator-publisher"
    ]
    if shipped:
        kubectl.apply(shipped)
        return {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "webhook-operator-publisher",
        }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "publisher", "namespace": namespace},
    }
    kubectl.apply([{**role, "rules": PUBLISHER_RULES}])
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "publisher"}


def test_an_application_account_with_only_the_publisher_role_can_publish_and_wait(
    kubectl: Kubectl, namespace: str, new_namespace: Callable[[], str], operator: Operator, tmp_path: Path
) -> None:
    elsewhere = new_namespace()
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "orders-service", "namespace": namespace},
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "orders-service-publishes", "namespace": namespace},
        "roleRef": publisher_role_ref(kubectl, namespace),
        "subjects": [{"kind": "ServiceAccount", "name": "orders-service", "namespace": namespace}],
    }
    kubectl.apply([account, binding])
    kubeconfig = str(token_kubeconfig(kubectl, namespace, "orders-service", tmp_path))
    arguments = (
        "order.created",
        "--kubeconfig",
        kubeconfig,
        "--key",
        "as-the-app",
        "--wait",
        "--timeout",
        "60",
    )

    first = publish(*arguments, "-n", namespace)
    again = publish(*arguments, "-n", namespace)
    forbidden = publish(*arguments, "-n", elsewhere)
    with Publisher(namespace=namespace, kubeconfig=kubeconfig) as publisher:
        from_python = publisher.publish("order.paid", {"orderId": 1}, key="paid-as-the-app")
        status = publisher.wait(from_python.name, timeout=60)

    assert first.returncode == 0, first.stderr  # nothing subscribed: Delivered, NoSubscriptions
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert status.outcome == "Delivered"
    assert forbidden.returncode == 4
    assert "forbidden" in forbidden.stderr.lower()
    assert "webhook-operator-publisher" in forbidden.stderr
    assert events(kubectl, elsewhere) == []

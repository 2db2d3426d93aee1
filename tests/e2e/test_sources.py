"""WebhookSource on a real API server: ConfigMap changes become signed webhooks, exactly once,
across a restart of the operator; Secrets and kinds the operator was not granted are refused."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from tests.conftest import free_port, make_signing_key
from tests.e2e.cluster import REPO, Kubectl, condition, eventually
from tests.e2e.conftest import (
    IN_CLUSTER,
    Namespaces,
    Operator,
    service_account_kubeconfig,
    start_local_operator,
)
from tests.e2e.receiver import ReceiverView, wait_for_requests
from tests.e2e.test_delivery import API_VERSION, signing_secret, subscription

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CONFIGMAPS_ROLE = REPO / "deploy" / "components" / "sources-configmaps" / "clusterrole.yaml"
AGGREGATE_LABEL = "webhooks.openplatform.dev/aggregate-to-sources=true"
SOURCE_LABEL = "webhooks.openplatform.dev/source"


def source(namespace: str, name: str, kind: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WebhookSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"resource": {"apiVersion": "v1", "kind": kind}, **spec},
    }


def configmap(namespace: str, name: str, data: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    }


def grant_configmaps(kubectl: Kubectl) -> None:
    """The example ClusterRole, aggregated into webhook-operator-sources.

    A cluster's controller-manager copies the rules of labelled roles into the aggregated one;
    the test kit has none, so this does its work (on a full cluster it writes what it would)."""
    kubectl.apply([yaml.safe_load(CONFIGMAPS_ROLE.read_text())])
    labelled = kubectl.json("clusterroles", "-l", AGGREGATE_LABEL)["items"]
    rules = [rule for role in labelled for rule in role.get("rules") or []]
    aggregated = kubectl.json("clusterrole/webhook-operator-sources")
    aggregated["rules"] = rules
    for field in ("resourceVersion", "managedFields", "uid", "creationTimestamp"):
        aggregated["metadata"].pop(field, None)
    kubectl.apply([aggregated])


def emitted(kubectl: Kubectl, namespace: str, source_name: str) -> list[dict[str, Any]]:
    items = kubectl.json("whev", "-n", namespace, "-l", f"{SOURCE_LABEL}={source_name}")["items"]
    return sorted(items, key=lambda item: item["metadata"]["creationTimestamp"])


@pytest.mark.skipif(IN_CLUSTER, reason="restarts an operator of its own on this machine")
def test_configmap_changes_become_signed_webhooks_once_across_a_restart(
    kubectl: Kubectl, own_namespaces: Namespaces, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    namespace = own_namespaces.create("source")
    receiver = ReceiverView(request.getfixturevalue("_local_receiver"), prefix=namespace)
    key = make_signing_key()
    kubectl.apply(
        [
            signing_secret(namespace, "signing", key),
            subscription(
                namespace, "config", url=receiver.url("/config"), eventTypes=["configmap.*"],
                signing={"secretRef": {"name": "signing"}},
            ),
            source(namespace, "shop-config", "ConfigMap", selector={"matchLabels": {"app": "shop"}}),
        ]
    )  # fmt: skip
    account = service_account_kubeconfig(kubectl, tmp_path)
    grant_configmaps(kubectl)
    first = start_local_operator(["--namespace", namespace], tmp_path / "first.log", kubeconfig=account)
    try:
        kubectl.wait("--for=condition=Ready", "whsrc/shop-config", "-n", namespace, timeout=60)
        kubectl.apply(
            [
                configmap(namespace, "settings", {"color": "blue"}, {"app": "shop"}),
                configmap(namespace, "unrelated", {"color": "red"}, {"app": "other"}),
            ]
        )
        added = wait_for_requests(receiver, "/config", 1)[0]
        assert Webhook(key).verify(added.body, added.headers) is not None
        body = added.json()
        assert body["type"] == "configmap.added"
        assert body["data"]["data"] == {"color": "blue"}
        assert body["data"]["metadata"]["name"] == "settings"
        assert "managedFields" not in body["data"]["metadata"]

        kubectl("patch", "configmap/settings", "-n", namespace, "-p", '{"data":{"color":"green"}}')
        modified = wait_for_requests(receiver, "/config", 2)[1]
        assert Webhook(key).verify(modified.body, modified.headers) is not None
        assert modified.json()["type"] == "configmap.modified"
        assert modified.json()["data"]["data"] == {"color": "green"}

        # Metadata only (an annotation, a label the selector ignores): nothing to announce.
        kubectl("annotate", "configmap/settings", "-n", namespace, "note=reviewed")
        kubectl("label", "configmap/settings", "-n", namespace, "team=web")
        kubectl("patch", "configmap/unrelated", "-n", namespace, "-p", '{"data":{"color":"black"}}')
        time.sleep(3)
        assert len(receiver.requests("/config")) == 2
    finally:
        first.stop()
    assert first.process.returncode == 0
    events = emitted(kubectl, namespace, "shop-config")
    assert [e["spec"]["type"] for e in events] == ["configmap.added", "configmap.modified"]
    owner = kubectl.json("whsrc/shop-config", "-n", namespace)
    assert events[0]["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert events[0]["spec"]["source"] == f"/api/v1/namespaces/{namespace}/configmaps/settings"
    assert owner["status"]["eventsEmitted"] == 2
    assert owner["status"]["resourceVersion"]

    # While the operator is down: one change, one new object.
    kubectl("patch", "configmap/settings", "-n", namespace, "-p", '{"data":{"color":"yellow"}}')
    kubectl.apply([configmap(namespace, "late", {"size": "L"}, {"app": "shop"})])

    second = start_local_operator(["--namespace", namespace], tmp_path / "second.log", kubeconfig=account)
    try:
        caught_up = wait_for_requests(receiver, "/config", 4)[2:]
        assert sorted((r.json()["type"], r.json()["data"]["metadata"]["name"]) for r in caught_up) == [
            ("configmap.added", "late"),
            ("configmap.modified", "settings"),
        ]
        kubectl("delete", "configmap/settings", "-n", namespace)
        deleted = wait_for_requests(receiver, "/config", 5)[4]
        assert Webhook(key).verify(deleted.body, deleted.headers) is not None
        assert deleted.json()["type"] == "configmap.deleted"
        assert deleted.json()["data"]["metadata"]["name"] == "settings"
        time.sleep(3)
    finally:
        second.stop()
    # Nothing emitted twice: the restart repeated none of the first operator's events.
    assert len(receiver.requests("/config")) == 5
    assert len(emitted(kubectl, namespace, "shop-config")) == 5
    assert kubectl.json("whsrc/shop-config", "-n", namespace)["status"]["eventsEmitted"] == 5


def test_secrets_and_ungranted_kinds_are_stalled_forbidden_and_emit_nothing(
    kubectl: Kubectl, namespace: str, operator: Operator
) -> None:
    kubectl.apply(
        [
            source(namespace, "secrets", "Secret"),
            source(namespace, "pods", "Pod"),
            signing_secret(namespace, "a-secret", make_signing_key()),
        ]
    )
    for name in ("secrets", "pods"):
        kubectl.wait("--for=condition=Stalled", f"whsrc/{name}", "-n", namespace, timeout=60)
        stalled = condition(kubectl.json(f"whsrc/{name}", "-n", namespace), "Stalled")
        assert stalled is not None
        assert stalled["reason"] == "Forbidden"
    pods = condition(kubectl.json("whsrc/pods", "-n", namespace), "Stalled")
    assert pods is not None
    assert "may not list or watch pods" in pods["message"]  # names the missing permission
    ready = condition(kubectl.json("whsrc/secrets", "-n", namespace), "Ready")
    assert ready is not None
    assert ready["status"] == "False"
    assert kubectl.json("whev", "-n", namespace)["items"] == []


@pytest.mark.skipif(IN_CLUSTER, reason="reads the metrics of an operator of its own")
def test_changes_beyond_the_rate_cap_are_coalesced_to_the_latest_state(
    kubectl: Kubectl, own_namespaces: Namespaces, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    namespace = own_namespaces.create("capped")
    receiver = ReceiverView(request.getfixturevalue("_local_receiver"), prefix=namespace)
    kubectl.apply(
        [
            subscription(namespace, "config", url=receiver.url("/capped"), eventTypes=["configmap.*"]),
            source(
                namespace,
                "slow",
                "ConfigMap",
                on=["Modified"],
                maxEventsPerSecond=0.5,
                selector={
                    "matchExpressions": [{"key": "app", "operator": "In", "values": ["shop", "store"]}]
                },
            ),
            configmap(namespace, "counter", {"n": "0"}, {"app": "store"}),
            configmap(namespace, "elsewhere", {"n": "0"}, {"app": "blog"}),
        ]
    )
    account = service_account_kubeconfig(kubectl, tmp_path)
    grant_configmaps(kubectl)
    metrics_port = free_port()
    operator = start_local_operator(
        ["--namespace", namespace, "--metrics-port", str(metrics_port)],
        tmp_path / "op.log",
        kubeconfig=account,
    )
    try:
        kubectl.wait("--for=condition=Ready", "whsrc/slow", "-n", namespace, timeout=60)
        for n in range(1, 7):  # six changes within a second or two; the cap allows one per 2 s
            for name in ("counter", "elsewhere"):
                kubectl(
                    "patch", f"configmap/{name}", "-n", namespace, "-p", json.dumps({"data": {"n": str(n)}})
                )
        eventually(
            lambda: any(r.json()["data"]["data"] == {"n": "6"} for r in receiver.requests("/capped")),
            timeout=60,
            what="the latest state to be announced",
        )
        time.sleep(3)
        bodies = [r.json()["data"] for r in receiver.requests("/capped")]
        assert {body["metadata"]["name"] for body in bodies} == {"counter"}  # the selector's In held
        announced = [body["data"]["n"] for body in bodies]
        assert 1 <= len(announced) < 6, announced  # coalesced, not one event per change
        assert announced[-1] == "6"  # the latest state wins
        assert announced == sorted(announced, key=int)  # never an older state after a newer one
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
    finally:
        operator.stop()
    labels = f'namespace="{namespace}",source="slow"'
    assert f'webhook_source_events_total{{change="modified",{labels}}} {float(len(announced))}' in metrics
    coalesced = [
        line
        for line in metrics.splitlines()
        if line.startswith(f"webhook_source_coalesced_total{{{labels}}}")
    ]
    assert coalesced
    assert float(coalesced[0].split()[-1]) >= 1

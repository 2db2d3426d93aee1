"""What GitOps tools and cluster admins meet on a real API server.

- Every example applies, and every manifest set we ship (`kubectl kustomize` of deploy/ with its
  overlay and components; the Helm chart rendered by Helm's engine for each value set) passes a
  server-side dry run: admission, schemas, RBAC object rules, as a real install would meet them.
  The Prometheus Operator's kinds are not in this cluster, so schemaless stand-ins of its two
  CRDs are applied first (the dry run then checks everything but those two objects' fields).
- kstatus's rules and the Argo CD Lua health checks (tests/gitops.py) read the objects the real
  operator left in every state: valid, paused, misconfigured, secret missing, disabled, egress
  denied; events in progress, delivered and failed.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import make_signing_key
from tests.e2e.cluster import REPO, Kubectl, condition, eventually
from tests.e2e.conftest import Operator, examples_for
from tests.e2e.receiver import Receiver
from tests.e2e.test_delivery import signing_secret, subscription
from tests.gitops import argocd_health, kstatus
from tests.unit.manifests_support import render_chart
from tests.unit.test_chart import VALUE_SETS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

API_VERSION = "webhooks.openplatform.dev/v1alpha1"
DEPLOY = REPO / "deploy"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def into(namespace: str, objects: list[dict[str, Any]], *, operator_namespace: str) -> list[dict[str, Any]]:
    """The objects moved to a fresh namespace (this API server never finishes deleting one):
    `operator_namespace` becomes `namespace`, in metadata and in subjects. The Namespace object
    itself gets an unused name (a dry run creates nothing, so it still checks its labels)."""
    moved = []
    for obj in copy.deepcopy(objects):
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = f"{namespace}-dry-run"
        elif obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects", []):
            if subject.get("namespace") == operator_namespace:
                subject["namespace"] = namespace
        moved.append(obj)
    return moved


def dry_run(kubectl: Kubectl, objects: list[dict[str, Any]]) -> None:
    result = kubectl.apply(objects, "--dry-run=server", check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(objects), result.stdout


@pytest.fixture(scope="module")
def monitoring_crds(kubectl: Kubectl) -> None:
    """Schemaless stand-ins for the Prometheus Operator's ServiceMonitor and PrometheusRule."""

    def crd(kind: str, plural: str) -> dict[str, Any]:
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {
                "group": "monitoring.coreos.com",
                "names": {
                    "kind": kind,
                    "plural": plural,
                    "listKind": f"{kind}List",
                    "singular": kind.lower(),
                },
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }

    kubectl.apply([crd("ServiceMonitor", "servicemonitors"), crd("PrometheusRule", "prometheusrules")])
    for plural in ("servicemonitors", "prometheusrules"):
        kubectl.wait("--for=condition=Established", f"crd/{plural}.monitoring.coreos.com", timeout=60)
    kubectl.forget_discovery()


def kustomized(kubectl: Kubectl, tmp_path: Path, base: str, *components: str) -> list[dict[str, Any]]:
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY / base, tmp_path)],
                "components": [os.path.relpath(DEPLOY / "components" / c, tmp_path) for c in components],
            }
        )
    )
    return [d for d in yaml.safe_load_all(kubectl("kustomize", str(tmp_path)).stdout) if d]


# ------------------------------------------------------------------------------------------
# Everything we ship is accepted by the API server


def test_every_example_applies(kubectl: Kubectl, namespace: str, receiver: Receiver) -> None:
    examples = examples_for(namespace, receiver)
    result = kubectl.apply(examples)
    assert result.stdout.count(" created") == len(examples), result.stdout
    listed = kubectl(
        "get", "deployment,service,whsub,whev,secret", "-n", namespace, "-o", "name"
    ).stdout.split()
    assert "deployment.apps/webhook-receiver" in listed
    assert "service/webhook-receiver" in listed
    # The Namespace of examples/ too (a dry run: the namespace `shop` is a user's, not ours).
    dry_run(kubectl, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}])


@pytest.mark.parametrize(
    ("base", "components"),
    [
        ("base", ()),
        ("overlays/namespaced", ()),
        ("base", ("servicemonitor", "prometheusrule", "networkpolicy")),
    ],
    ids=["base", "namespaced", "base+components"],
)
def test_kustomize_sets_pass_a_server_side_dry_run(
    kubectl: Kubectl,
    new_namespace: Any,
    monitoring_crds: None,
    tmp_path: Path,
    base: str,
    components: tuple[str, ...],
) -> None:
    operator_namespace, tenant = new_namespace(), new_namespace()
    objects = into(
        operator_namespace,
        kustomized(kubectl, tmp_path, base, *components),
        operator_namespace="webhook-operator",
    )
    for obj in objects:  # the overlay's tenant namespace `shop`, as a user would rename it
        if obj["kind"] == "RoleBinding":
            obj["metadata"]["namespace"] = tenant
    dry_run(kubectl, objects)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_chart_renderings_pass_a_server_side_dry_run(
    kubectl: Kubectl, new_namespace: Any, monitoring_crds: None, values: dict[str, Any]
) -> None:
    release_namespace = new_namespace()
    values = copy.deepcopy(values)
    if "namespaces" in values:
        values["namespaces"] = [new_namespace() for _ in values["namespaces"]]
    dry_run(kubectl, render_chart(values, release_namespace=release_namespace))


def test_every_pod_we_ship_passes_the_restricted_pod_security_standard(
    kubectl: Kubectl, new_namespace: Any, receiver: Receiver
) -> None:
    # deploy/base labels its namespace `enforce: restricted`; the API server's PodSecurity
    # admission judges a Pod made from each Deployment's template (no controller runs here).
    namespace = new_namespace()
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    deployments = [
        *(o for o in kubectl_kustomize(kubectl, DEPLOY / "base") if o["kind"] == "Deployment"),
        *(o for o in render_chart(VALUE_SETS["everything"]) if o["kind"] == "Deployment"),
        *(o for o in examples_for(namespace, receiver) if o["kind"] == "Deployment"),
    ]
    assert len(deployments) == 3
    for deployment in deployments:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": deployment["metadata"]["name"], "namespace": namespace},
            "spec": deployment["spec"]["template"]["spec"],
        }
        result = kubectl.apply([pod], "--dry-run=server", check=False)
        assert result.returncode == 0, (deployment["metadata"]["name"], result.stderr)
        assert "violate" not in result.stderr, result.stderr  # PodSecurity warns or refuses


def kubectl_kustomize(kubectl: Kubectl, path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(kubectl("kustomize", str(path)).stdout) if d]


def test_crds_can_be_kept_by_an_uninstall(kubectl: Kubectl, operator: Operator, tmp_path: Path) -> None:
    # What docs/uninstall.md tells Kustomize users: the label selector leaves the CRDs out.
    # (The session's operator runs with deploy/base's ServiceAccount and roles, so they exist.)
    (tmp_path / "all.yaml").write_text(kubectl("kustomize", str(DEPLOY / "base")).stdout)
    everything = kubectl("delete", "-f", str(tmp_path / "all.yaml"), "--dry-run=server", "--ignore-not-found")
    assert 'customresourcedefinition.apiextensions.k8s.io "webhookevents.webhooks.openplatform.dev"' in (
        everything.stdout
    )
    kept = kubectl(
        "delete", "-f", str(tmp_path / "all.yaml"), "-l", "app.kubernetes.io/component!=crd",
        "--dry-run=server", "--ignore-not-found",
    )  # fmt: skip
    assert "customresourcedefinition" not in kept.stdout
    assert 'clusterrole.rbac.authorization.k8s.io "webhook-operator-publisher" deleted' in kept.stdout


# ------------------------------------------------------------------------------------------
# kstatus and Argo CD read each state the real operator reports


def event(namespace: str, name: str, to: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WebhookEvent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "order.created", "data": {"orderId": 1}, "subscriptions": [to]},
    }


# name -> (kind, expected kstatus, expected Argo CD health, the condition the operator settles on)
STATES = {
    "valid": ("whsub", "Current", "Healthy", ("Ready", "True", "Active")),
    "paused": ("whsub", "InProgress", "Suspended", ("Ready", "False", "Paused")),
    "misconfigured": ("whsub", "Failed", "Degraded", ("Stalled", "True", "InvalidSecret")),
    "secret-missing": ("whsub", "InProgress", "Progressing", ("Reconciling", "True", "SecretNotFound")),
    "disabled": ("whsub", "Failed", "Degraded", ("Stalled", "True", "EndpointDisabled")),
    "egress-denied": ("whsub", "Failed", "Degraded", ("Stalled", "True", "EgressDenied")),
    "in-progress": ("whev", "InProgress", "Progressing", ("Reconciling", "True", "InProgress")),
    "delivered": ("whev", "Current", "Healthy", ("Delivered", "True", "AllDelivered")),
    "failed": ("whev", "Failed", "Degraded", ("Stalled", "True", "Failed")),
}


def test_kstatus_and_argocd_read_every_state_the_operator_reports(
    kubectl: Kubectl, namespace: str, receiver: Receiver, operator: Operator
) -> None:
    ns = namespace
    kubectl.apply(
        [
            signing_secret(ns, "good-key", make_signing_key()),
            signing_secret(ns, "bad-key", "not-a-standard-webhooks-key"),
            subscription(
                ns, "valid", url=receiver.url("/valid"), signing={"secretRef": {"name": "good-key"}}
            ),
            subscription(ns, "paused", url=receiver.url("/paused"), paused=True),
            subscription(
                ns, "misconfigured", url=receiver.url("/bad"), signing={"secretRef": {"name": "bad-key"}}
            ),
            subscription(
                ns, "secret-missing", url=receiver.url("/x"), signing={"secretRef": {"name": "absent"}}
            ),
            subscription(ns, "disabled", url=receiver.url("/gone?fail=100&status=410")),
            subscription(ns, "egress-denied", url="http://169.254.169.254/latest"),
            subscription(ns, "rejects", url=receiver.url("/rejects?fail=100&status=400")),
        ]
    )
    kubectl.wait("--for=condition=Ready", "whsub/valid", "whsub/rejects", "-n", ns, timeout=90)
    kubectl.apply(
        [
            event(ns, "delivered", "valid"),
            event(ns, "in-progress", "paused"),  # waits while its subscription is paused
            event(ns, "failed", "rejects"),
            event(ns, "gone", "disabled"),  # its 410 disables the subscription
        ]
    )

    def settled(name: str) -> dict[str, Any] | None:
        kind, _, _, (type_, status, reason) = STATES[name]
        obj: dict[str, Any] = kubectl.json(f"{kind}/{name}", "-n", ns)
        found = condition(obj, type_)
        return obj if found and (found["status"], found["reason"]) == (status, reason) else None

    for name, (kind, expected_kstatus, expected_argocd, _) in STATES.items():
        obj = eventually(lambda name=name: settled(name), timeout=90, what=f"{kind}/{name} to settle")
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"], name
        types = {c["type"]: c for c in obj["status"]["conditions"]}
        assert {"Reconciling", "Stalled"} <= set(types), name
        for each in types.values():
            assert each["observedGeneration"] == obj["metadata"]["generation"], (name, each)
        assert (kstatus(obj).status, argocd_health(obj).status) == (expected_kstatus, expected_argocd), name

    # A spec change the operator has not acted on yet reads as in progress, then settles again.
    kubectl("patch", "whsub/paused", "-n", ns, "--type=merge", "-p", '{"spec":{"paused":false}}')
    obj = eventually(lambda: settled_ready(kubectl, ns, "paused"), timeout=60, what="paused to resume")
    assert (kstatus(obj).status, argocd_health(obj).status) == ("Current", "Healthy")
    kubectl.wait("--for=condition=Delivered", "whev/in-progress", "-n", ns, timeout=60)
    obj = kubectl.json("whev/in-progress", "-n", ns)
    assert (kstatus(obj).status, argocd_health(obj).status) == ("Current", "Healthy")


def settled_ready(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    obj: dict[str, Any] = kubectl.json(f"whsub/{name}", "-n", namespace)
    ready = condition(obj, "Ready")
    return obj if ready and ready["status"] == "True" else None

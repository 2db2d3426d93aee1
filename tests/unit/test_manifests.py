"""Every manifest we ship is valid: examples/, deploy/ (Kustomize base, overlay, components),
the Dockerfile and the kind script. The Helm chart and how it matches deploy/: test_chart.py.

- Built-in kinds are validated with kubernetes-validate (strict: unknown fields fail) against
  the oldest Kubernetes we support and the newest it knows; our own kinds against our CRDs
  (tests/unit/manifests_support.validate_custom_resource). tests/e2e/test_gitops.py sends them
  all to a real API server too (a server-side dry run).
- deploy/ is built with `kubectl kustomize` (skipped, with the reason, where kubectl is absent).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.unit.manifests_support import (
    DEPLOY_DIR,
    EXAMPLES_DIR,
    GROUP,
    IMAGE,
    LABELS,
    NAMESPACE,
    ROOT,
    by_key,
    kubectl,
    kustomize_build,
    load_crds,
    load_yaml_docs,
    object_key,
    only,
    operator_container,
    validate,
    without_namespace_and_crds,
)

# ------------------------------------------------------------------------------------------
# examples/


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in sorted(EXAMPLES_DIR.glob("*.yaml")) for doc in load_yaml_docs(path)]


EXAMPLES = example_docs()


@pytest.mark.parametrize(
    "doc", [pytest.param(doc, id=f"{name}:{doc['kind']}/{doc['metadata']['name']}") for name, doc in EXAMPLES]
)
def test_every_example_is_valid(doc: dict[str, Any]) -> None:
    validate(doc)


def test_examples_are_a_namespace_a_secret_a_receiver_two_subscriptions_and_events() -> None:
    assert EXAMPLES[0] == (
        "00-namespace.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    )
    kinds = [doc["kind"] for _, doc in EXAMPLES]
    assert kinds.count("Secret") == 1
    assert kinds.count("Deployment") == kinds.count("Service") == 1
    assert kinds.count("WebhookSubscription") == 2
    assert kinds.count("WebhookEvent") >= 3
    # `kubectl apply -f examples/` goes in file-name order: the namespace and the Secret first.
    first_subscription = kinds.index("WebhookSubscription")
    assert kinds.index("Namespace") < kinds.index("Secret") < first_subscription < kinds.index("WebhookEvent")


def test_example_receiver_runs_the_flask_receivers_behind_the_subscriptions_urls() -> None:
    deployment = example("Deployment", "webhook-receiver")
    service = example("Service", "webhook-receiver")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    ports = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    dockerfile = (EXAMPLES_DIR / "receivers" / "flask" / "Dockerfile").read_text()
    for sub_name, container_name, script in [
        ("orders-to-crm", "orders", "app.py"),
        ("invoices-to-billing", "invoices", "cloudevents_app.py"),
    ]:
        url = urllib.parse.urlsplit(example("WebhookSubscription", sub_name)["spec"]["url"])
        assert url.hostname == "webhook-receiver.shop.svc.cluster.local"
        container = containers[container_name]
        assert container["args"] == [script]
        assert (EXAMPLES_DIR / "receivers" / "flask" / script).is_file()
        assert script in dockerfile
        (port,) = container["ports"]
        assert ports[url.port] == port["name"]
        env = {e["name"]: e for e in container["env"]}
        assert env["WEBHOOK_PATH"]["value"] == url.path
        # It verifies with the subscriptions' own signing key.
        secret_ref = example("WebhookSubscription", sub_name)["spec"]["signing"]["secretRef"]["name"]
        assert env["WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": secret_ref, "key": "signingKey"}
        assert container["image"] in dockerfile  # the tag the Dockerfile's comment builds


def test_examples_live_in_the_shop_namespace() -> None:
    for _, doc in EXAMPLES:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "shop", doc["metadata"]["name"]


def example(kind: str, name: str) -> dict[str, Any]:
    return only([doc for _, doc in EXAMPLES], kind, name)


def test_example_subscriptions_show_both_formats() -> None:
    orders = example("WebhookSubscription", "orders-to-crm")["spec"]
    assert orders["format"] == "StandardWebhooks"
    assert orders["eventTypes"] == ["order.*"]
    assert orders["signing"]["secretRef"]["name"]
    assert orders["url"] == "http://webhook-receiver.shop.svc.cluster.local:8000/hooks/orders"
    invoices = example("WebhookSubscription", "invoices-to-billing")["spec"]
    assert invoices["format"] == "CloudEvents"
    assert invoices["eventTypes"] == ["invoice.paid"]
    assert invoices["url"] == "http://webhook-receiver.shop.svc.cluster.local:8001/hooks/invoices"


def test_example_signing_key_is_a_standard_webhooks_key() -> None:
    secrets = {doc["metadata"]["name"]: doc for _, doc in EXAMPLES if doc["kind"] == "Secret"}
    for _, doc in EXAMPLES:
        if doc["kind"] != "WebhookSubscription" or "signing" not in doc["spec"]:
            continue
        secret = secrets[doc["spec"]["signing"]["secretRef"]["name"]]
        key = base64.b64decode(secret["data"]["signingKey"], validate=True).decode()
        assert key.startswith("whsec_")
        assert len(base64.b64decode(key.removeprefix("whsec_"), validate=True)) >= 24
        assert "previousSigningKey" not in secret["data"]  # only during a rotation
        # The comment shows the decoded key; it must not lie.
        assert f"decodes to {key}" in (EXAMPLES_DIR / "10-signing-secret.yaml").read_text()


def test_example_signing_key_works_with_the_official_library() -> None:
    webhooks = pytest.importorskip("standardwebhooks.webhooks")
    key = base64.b64decode(only([doc for _, doc in EXAMPLES], "Secret")["data"]["signingKey"]).decode()
    hook = webhooks.Webhook(key)
    import datetime as dt

    now = dt.datetime.now(tz=dt.UTC)
    signature = hook.sign("msg_1", now, '{"type":"order.created"}')
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert hook.verify('{"type":"order.created"}', headers) is not None


def test_example_events_demonstrate_matching() -> None:
    # Which subscription each example event is there to show (glob match on spec.type).
    subscriptions = {
        doc["metadata"]["name"]: doc["spec"] for _, doc in EXAMPLES if doc["kind"] == "WebhookSubscription"
    }
    expected = {
        "order-1001-created": ["orders-to-crm"],
        "order-1001-shipped": ["orders-to-crm"],
        "invoice-2001-paid": ["invoices-to-billing"],
        "product-42-updated": [],
    }
    for _, doc in EXAMPLES:
        if doc["kind"] != "WebhookEvent":
            continue
        spec = doc["spec"]
        matched = sorted(
            name
            for name, sub in subscriptions.items()
            if any(fnmatch.fnmatchcase(spec["type"], pattern) for pattern in sub.get("eventTypes") or ["*"])
            and (not spec.get("subscriptions") or name in spec["subscriptions"])
        )
        assert matched == expected[doc["metadata"]["name"]], doc["metadata"]["name"]


# ------------------------------------------------------------------------------------------
# deploy/base (Kustomize)


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: building deploy/ needs `kubectl kustomize`")
    return kustomize_build(DEPLOY_DIR / "base")


@pytest.fixture(scope="module")
def namespaced() -> list[dict[str, Any]]:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: building deploy/ needs `kubectl kustomize`")
    return kustomize_build(DEPLOY_DIR / "overlays" / "namespaced")


COMPONENTS = ["servicemonitor", "prometheusrule", "networkpolicy"]


def with_components(overlay: Path) -> list[dict[str, Any]]:
    """deploy/base plus every component, as a user's overlay would combine them."""
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY_DIR / "base", overlay)],
                "components": [os.path.relpath(DEPLOY_DIR / "components" / c, overlay) for c in COMPONENTS],
            }
        )
    )
    return kustomize_build(overlay)


@pytest.fixture(scope="module")
def with_service_monitor(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: building deploy/ needs `kubectl kustomize`")
    return with_components(tmp_path_factory.mktemp("overlay"))


def test_base_objects_are_valid(base: list[dict[str, Any]]) -> None:
    by_key(base)
    for obj in base:
        validate(obj)


def without_labels_and_annotations(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in obj["metadata"].items() if k not in ("labels", "annotations")}
    return {**obj, "metadata": metadata}


def test_base_installs_the_crds_from_the_crds_folder(base: list[dict[str, Any]]) -> None:
    crds = {o["metadata"]["name"]: o for o in base if o["kind"] == "CustomResourceDefinition"}
    assert {name: without_labels_and_annotations(crd) for name, crd in crds.items()} == {
        crd["metadata"]["name"]: without_labels_and_annotations(crd) for crd in load_crds().values()
    }


def test_base_crds_survive_an_uninstall_that_asks_for_it(base: list[dict[str, Any]]) -> None:
    # `kubectl delete -k deploy/base -l app.kubernetes.io/component!=crd` leaves them, and
    # Flux and Argo CD never prune them.
    for obj in base:
        is_crd = obj["kind"] == "CustomResourceDefinition"
        assert (obj["metadata"]["labels"].get("app.kubernetes.io/component") == "crd") == is_crd
        if is_crd:
            assert obj["metadata"]["annotations"] == {
                "kustomize.toolkit.fluxcd.io/prune": "disabled",
                "argocd.argoproj.io/sync-options": "Delete=false",
            }
    uninstall = "kubectl delete -k deploy/base -l app.kubernetes.io/component!=crd"
    assert uninstall in (DEPLOY_DIR / "base" / "kustomization.yaml").read_text()
    assert uninstall in (ROOT / "docs" / "uninstall.md").read_text()


def test_base_objects_and_namespace(base: list[dict[str, Any]]) -> None:
    assert sorted(
        (*object_key(o)[:2], o["metadata"]["name"]) for o in without_namespace_and_crds(base)
    ) == sorted(
        [
            ("ClusterRole", "", "webhook-operator"),
            ("ClusterRole", "", "webhook-operator-discovery"),
            ("ClusterRole", "", "webhook-operator-sources"),
            ("ClusterRoleBinding", "", "webhook-operator"),
            ("ClusterRoleBinding", "", "webhook-operator-sources"),
            ("ClusterRoleBinding", "", "webhook-operator-discovery"),
            ("ClusterRole", "", "webhook-operator-publisher"),
            ("ClusterRole", "", "webhook-operator-edit"),
            ("ClusterRole", "", "webhook-operator-view"),
            ("Deployment", NAMESPACE, "webhook-operator"),
            ("PodDisruptionBudget", NAMESPACE, "webhook-operator"),
            ("Role", NAMESPACE, "webhook-operator-leader-election"),
            ("RoleBinding", NAMESPACE, "webhook-operator-leader-election"),
            ("Service", NAMESPACE, "webhook-operator-metrics"),
            ("ServiceAccount", NAMESPACE, "webhook-operator"),
        ]
    )
    namespace = only(base, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    # The pod passes the restricted Pod Security Standard, so the namespace can enforce it.
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in base:
        assert LABELS.items() <= obj["metadata"].get("labels", {}).items(), object_key(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"
        assert obj["metadata"]["labels"]["app.kubernetes.io/version"] == IMAGE.rsplit(":", 1)[1]


def test_pod_disruption_budget_covers_the_operator_and_never_blocks_a_drain(
    base: list[dict[str, Any]],
) -> None:
    budget = only(base, "PodDisruptionBudget")["spec"]
    pod_labels = only(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget == {"maxUnavailable": 1, "selector": budget["selector"]}


def test_deployment(base: list[dict[str, Any]]) -> None:
    deployment = only(base, "Deployment")
    spec = deployment["spec"]
    # Two replicas electing one deliverer: a standby takes over, also during a rolling update.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate"}
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["serviceAccountName"] == "webhook-operator"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = operator_container(base)
    assert container["image"] == IMAGE
    # command replaces the image's ENTRYPOINT ["webhook-operator", "run"], so `run` is not doubled.
    assert container["command"] == ["webhook-operator"]
    assert container["args"] == ["run", "--metrics-port=8080", "--health-port=8081", "--leader-elect"]
    assert container["env"] == [{"name": "WEBHOOK_OPERATOR_ALLOW_CIDRS", "value": ""}]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"tmp": "/tmp"}
    assert "emptyDir" in volumes["tmp"]


def test_metrics_service_reaches_the_operator(base: list[dict[str, Any]]) -> None:
    service = only(base, "Service", "webhook-operator-metrics")
    pod_labels = only(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics"
    assert port["port"] == 8080
    assert port["targetPort"] in {p["name"] for p in operator_container(base)["ports"]}


# What the operator may do, and nothing more: widening any rule must fail here first.
OPERATOR_RULES = [
    {"apiGroups": [GROUP], "resources": ["webhooksubscriptions"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": [GROUP],
        "resources": ["webhookevents"],
        "verbs": ["get", "list", "watch", "delete"],
    },
    {"apiGroups": [GROUP], "resources": ["webhookevents"], "verbs": ["create"]},
    {"apiGroups": [GROUP], "resources": ["webhooksources"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": [GROUP],
        "resources": ["webhooksubscriptions/status", "webhookevents/status", "webhooksources/status"],
        "verbs": ["patch"],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
DISCOVERY_RULES = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]


def test_rbac_is_least_privilege(base: list[dict[str, Any]]) -> None:
    assert only(base, "ClusterRole", "webhook-operator")["rules"] == OPERATOR_RULES
    assert only(base, "ClusterRole", "webhook-operator-discovery")["rules"] == DISCOVERY_RULES
    # Sources may watch nothing until an admin aggregates a labelled ClusterRole in.
    sources = only(base, "ClusterRole", "webhook-operator-sources")
    assert sources["rules"] == []
    assert sources["aggregationRule"] == {
        "clusterRoleSelectors": [{"matchLabels": {f"{GROUP}/aggregate-to-sources": "true"}}]
    }
    for role in (o for o in base if o["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["webhook-operator"],
        "verbs": ["get", "watch", "patch"],
    },
]


def test_leader_election_may_touch_only_its_own_lease_in_its_own_namespace(
    base: list[dict[str, Any]],
) -> None:
    role = only(base, "Role", "webhook-operator-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == LEASE_RULES
    binding = only(base, "RoleBinding", "webhook-operator-leader-election")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "webhook-operator-leader-election",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "webhook-operator", "namespace": NAMESPACE}
    ]


def test_rbac_comments_explain_every_rule() -> None:
    text = (DEPLOY_DIR / "base" / "clusterrole.yaml").read_text()
    rule_lines = [i for i, line in enumerate(text.splitlines()) if line.startswith("- apiGroups:")]
    lines = text.splitlines()
    assert len(rule_lines) == len(OPERATOR_RULES) + len(DISCOVERY_RULES)
    for i in rule_lines:
        assert lines[i - 1].startswith("#"), lines[i]


# Roles for people and applications: publishing events, and the aggregated edit/view roles.
USER_ROLES = {
    "webhook-operator-publisher": (
        {},
        [{"apiGroups": [GROUP], "resources": ["webhookevents"], "verbs": ["create", "get", "list", "watch"]}],
    ),
    "webhook-operator-edit": (
        {
            "rbac.authorization.k8s.io/aggregate-to-admin": "true",
            "rbac.authorization.k8s.io/aggregate-to-edit": "true",
        },
        [
            {
                "apiGroups": [GROUP],
                "resources": ["webhooksubscriptions", "webhookevents"],
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            }
        ],
    ),
    "webhook-operator-view": (
        {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        [
            {
                "apiGroups": [GROUP],
                "resources": ["webhooksubscriptions", "webhookevents"],
                "verbs": ["get", "list", "watch"],
            }
        ],
    ),
}


@pytest.mark.parametrize("name", USER_ROLES)
def test_user_roles_publish_and_aggregate_into_the_built_in_roles(
    base: list[dict[str, Any]], name: str
) -> None:
    role = only(base, "ClusterRole", name)
    aggregation, rules = USER_ROLES[name]
    labels = role["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("rbac.authorization.k8s.io/")} == aggregation
    assert role["rules"] == rules
    # Nobody is bound to them by the install: they are for people and applications to bind.
    assert not [b for b in base if b.get("roleRef", {}).get("name") == name]


@pytest.mark.parametrize(
    "name", ["webhook-operator", "webhook-operator-discovery", "webhook-operator-sources"]
)
def test_cluster_roles_are_bound_to_the_service_account(base: list[dict[str, Any]], name: str) -> None:
    binding = only(base, "ClusterRoleBinding", name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": name,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "webhook-operator", "namespace": NAMESPACE}
    ]


# ------------------------------------------------------------------------------------------
# deploy/overlays/namespaced and deploy/components/servicemonitor


def test_namespaced_overlay_is_valid(namespaced: list[dict[str, Any]]) -> None:
    by_key(namespaced)
    for obj in namespaced:
        validate(obj)


def test_namespaced_overlay_grants_access_in_its_namespace_only(namespaced: list[dict[str, Any]]) -> None:
    bindings = [o["metadata"]["name"] for o in namespaced if o["kind"] == "ClusterRoleBinding"]
    assert bindings == ["webhook-operator-discovery"]  # read-only discovery stays cluster-wide
    role_binding = only(namespaced, "RoleBinding", "webhook-operator")
    assert role_binding["metadata"]["namespace"] == "shop"
    assert role_binding["roleRef"]["name"] == "webhook-operator"
    assert role_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "webhook-operator", "namespace": NAMESPACE}
    ]
    for name in ("webhook-operator", "webhook-operator-sources"):
        role_binding = only(namespaced, "RoleBinding", name)
        assert role_binding["metadata"]["namespace"] == "shop"
        assert role_binding["roleRef"]["name"] == name
        assert role_binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "webhook-operator", "namespace": NAMESPACE}
        ]
    assert operator_container(namespaced)["args"] == [
        "run",
        "--metrics-port=8080",
        "--health-port=8081",
        "--leader-elect",
        "--namespace=shop",
    ]


def test_service_monitor_component(with_service_monitor: list[dict[str, Any]]) -> None:
    monitor = only(with_service_monitor, "ServiceMonitor")
    validate(monitor)
    # The metrics' own `namespace` label (the subscription's) must win over the target's.
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    service = only(with_service_monitor, "Service", "webhook-operator-metrics")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == NAMESPACE
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


# ------------------------------------------------------------------------------------------
# Dockerfile, .dockerignore, the kind script and its workflow


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_dockerfile_is_multi_stage_slim_and_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    builder, final = dockerfile_stages()
    assert builder[0] == ("FROM", "${PYTHON_IMAGE} AS builder")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    builder_run = " ".join(args for instr, args in builder if instr == "RUN")
    assert "pip wheel" in builder_run
    assert "/opt/venv" in builder_run
    # The CRDs ship in the wheel through the operator/webhook_operator/crds symlink.
    copied = [args for instr, args in builder if instr == "COPY"]
    assert "crds/ crds/" in copied
    assert "operator/ operator/" in copied
    final_instructions = dict(final)
    assert final_instructions["COPY"] == "--from=builder /opt/venv /opt/venv"
    assert json.loads(final_instructions["ENTRYPOINT"]) == ["webhook-operator", "run"]
    assert final_instructions["USER"] == "65532:65532"
    assert "/opt/venv/bin" in final_instructions["ENV"]
    # No compilers or package installs in the final image.
    final_run = " ".join(args for instr, args in final if instr == "RUN")
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "pip wheel"):
        assert tool not in final_run


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""

    def to_regex(pattern: str) -> str:
        out = re.escape(pattern.strip("/"))
        out = (
            out.replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        return f"^{out}$"

    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = to_regex(raw[1:] if negate else raw)
        if any(re.match(regex, c) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_build_inputs_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    inputs = [
        "pyproject.toml",
        "README.md",
        "crds/webhookevents.yaml",
        "operator/webhook_operator/__init__.py",
    ]
    for path in inputs:
        assert not dockerignored(path, patterns), path
    outside = [
        ".venv/bin/python",
        "tests/unit/test_crds.py",
        ".git/HEAD",
        "examples/receivers/express/node_modules/x",
        "operator/webhook_operator/__pycache__/x.pyc",
        "deploy/base/deployment.yaml",
    ]
    for path in outside:
        assert dockerignored(path, patterns), path


def test_e2e_kind_script() -> None:
    script = ROOT / "scripts" / "e2e-kind.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    # The image it builds and loads is the one deploy/base runs (else the pod pulls from a registry).
    (default_image,) = re.findall(r"IMAGE=\$\{IMAGE:-([^}]+)\}", text)
    assert default_image == IMAGE
    steps = [
        "kind create cluster",
        "docker build",
        "kind load docker-image",
        "kubectl apply -k deploy/base",
        "E2E_IN_CLUSTER=1",
        "-m pytest tests/e2e -m e2e",
        "trap cleanup EXIT",
        "kind delete cluster",
    ]
    for step in steps:
        assert step in text, step


def test_e2e_workflow_runs_the_script_on_a_hosted_runner() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "e2e.yaml").read_text())
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    runs = [step.get("run", "") for step in job["steps"]]
    uses = [step.get("uses", "") for step in job["steps"]]
    assert "scripts/e2e-kind.sh" in runs
    assert any(u.startswith("helm/kind-action@") for u in uses)
    assert any("tests/unit/test_manifests.py" in r for r in runs)


# ------------------------------------------------------------------------------------------
# deploy/components/prometheusrule and networkpolicy


def test_components_are_valid(with_service_monitor: list[dict[str, Any]]) -> None:
    by_key(with_service_monitor)
    for obj in with_service_monitor:
        validate(obj)


PER_SUBSCRIPTION_ALERTS = {
    "WebhookEndpointDisabled",
    "WebhookDeliveryFailureRatioHigh",
    "WebhookDeliveriesPending",
}


def documented_metrics() -> dict[str, set[str]]:
    """docs/metrics.md's table: each metric's labels (histograms' series add their suffixes)."""
    rows = re.findall(
        r"^\| `(webhook_\w+)` \| \w+ \| ([^|]*) \|", (ROOT / "docs" / "metrics.md").read_text(), re.M
    )
    labels = {name: set(re.findall(r"`(\w+)`", cell)) for name, cell in rows}
    for name in [n for n in labels if n.endswith("_seconds")]:
        for suffix in ("_bucket", "_sum", "_count"):
            labels[name + suffix] = labels[name] | ({"le"} if suffix == "_bucket" else set())
    return labels


def promql_parts(expr: Any) -> tuple[list[tuple[str, set[str]]], list[set[str]]]:
    """(metric name, labels matched) of every selector, and every aggregation's `by` labels."""
    selectors: list[tuple[str, set[str]]] = []
    groupings: list[set[str]] = []

    def walk(node: Any) -> None:
        kind = type(node).__name__
        if kind == "VectorSelector":
            selectors.append((node.name, {m.name for m in node.matchers.matchers}))
        elif kind == "MatrixSelector":
            walk(node.vector_selector)
        elif kind == "AggregateExpr":
            if node.modifier is not None:
                groupings.append(set(node.modifier.labels))
            walk(node.expr)
        elif kind == "BinaryExpr":
            walk(node.lhs)
            walk(node.rhs)
        elif kind == "Call":
            for arg in node.args:
                walk(arg)
        elif kind in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
            walk(node.expr)

    walk(expr)
    return selectors, groupings


def test_prometheus_rule_alerts_per_subscription_and_on_the_operator(
    with_service_monitor: list[dict[str, Any]],
) -> None:
    (group,) = only(with_service_monitor, "PrometheusRule")["spec"]["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert set(rules) == PER_SUBSCRIPTION_ALERTS | {"WebhookOperatorDown"}
    metrics = documented_metrics()
    for name, rule in rules.items():
        # Parsed by a PromQL parser (promql-parser, a port of Prometheus's own grammar).
        selectors, groupings = promql_parts(promql_parser.parse(rule["expr"]))
        for metric, matched in selectors:
            if metric == "up":
                continue
            assert metric in metrics, (name, metric)
            assert matched <= metrics[metric], (name, metric, matched)
        if name in PER_SUBSCRIPTION_ALERTS:
            assert groupings and all(g == {"namespace", "subscription"} for g in groupings), name
            for metric, _ in selectors:
                assert {"namespace", "subscription"} <= metrics[metric], metric
            assert "$labels.subscription" in rule["annotations"]["summary"]
    # The alert is on the endpoint's disabled reason, which the gauge carries per subscription.
    assert 'reason="EndpointDisabled"' in rules["WebhookEndpointDisabled"]["expr"]
    service = only(with_service_monitor, "Service", "webhook-operator-metrics")
    # The job of a ServiceMonitor's targets is the Service's name.
    assert f'job="{service["metadata"]["name"]}"' in rules["WebhookOperatorDown"]["expr"]
    assert rules["WebhookOperatorDown"]["labels"]["severity"] == "critical"


def test_promql_check_catches_a_label_the_metric_lacks() -> None:
    selectors, groupings = promql_parts(
        promql_parser.parse('sum by (ready) (webhook_attempts_total{ready="x"})')
    )
    assert selectors == [("webhook_attempts_total", {"ready"})]
    assert not {"ready"} <= documented_metrics()["webhook_attempts_total"]
    assert groupings == [{"ready"}]


def test_network_policy_fences_the_operators_egress(with_service_monitor: list[dict[str, Any]]) -> None:
    policy = only(with_service_monitor, "NetworkPolicy")["spec"]
    pod_labels = only(with_service_monitor, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Egress"]
    dns, api, public = policy["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    v4, v6 = (block["ipBlock"] for block in public["to"])
    assert v4["cidr"] == "0.0.0.0/0"
    # Everything the operator's own egress policy refuses by default stays refused here too.
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"} <= set(
        v4["except"]
    )
    assert v6["cidr"] == "::/0"
    assert {"fc00::/7", "fe80::/10", "::1/128"} == set(v6["except"])

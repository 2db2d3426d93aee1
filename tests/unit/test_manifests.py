"""Every manifest we ship is valid, and the three ways to install (Kustomize base, namespaced
overlay, Helm chart) describe the same objects.

- Built-in kinds are validated with kubernetes-validate (strict: unknown fields fail) against
  the oldest Kubernetes we support and the newest it knows; our own kinds against our CRDs
  (tests/unit/manifests_support.validate_custom_resource).
- deploy/ is built with `kubectl kustomize` (skipped, with the reason, where kubectl is absent).
- The Helm chart is rendered by a small renderer of the subset of Helm's template language the
  chart uses (no helm binary here); where `helm` is on PATH (the e2e workflow) the real
  `helm template` output is compared with it too.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.unit.manifests_support import (
    CHART_DIR,
    CRD_DIR,
    DEPLOY_DIR,
    EXAMPLES_DIR,
    GROUP,
    K8S_MIN_VERSION,
    ROOT,
    HelmSubset,
    kubectl,
    kustomize_build,
    load_crds,
    load_yaml_docs,
    object_key,
    render_chart,
    validate_custom_resource,
)

K8S_LATEST = ".".join(kubernetes_validate.latest_version().split(".")[:2])
VERSIONS = [K8S_MIN_VERSION, K8S_LATEST]
NAMESPACE = "webhook-operator"
IMAGE = "ghcr.io/openplatform/webhook-operator:0.1.0"
LABELS = {"app.kubernetes.io/name": "webhook-operator", "app.kubernetes.io/part-of": "webhook-operator"}


def validate(obj: dict[str, Any]) -> None:
    """Fails unless an API server would accept ``obj`` (as far as a schema can tell)."""
    if obj["apiVersion"].startswith(f"{GROUP}/"):
        assert validate_custom_resource(obj) == [], object_key(obj)
    elif obj["apiVersion"].startswith("monitoring.coreos.com/"):
        check_service_monitor(obj)
    else:
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def check_service_monitor(obj: dict[str, Any]) -> None:
    # kubernetes-validate has no schema for the Prometheus Operator's CRDs: check the fields
    # that make it work instead (the selector and port are checked against the Service below).
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["kind"] == "ServiceMonitor"
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(obj["spec"]) == {"selector", "endpoints"}
    assert obj["spec"]["selector"]["matchLabels"]
    for endpoint in obj["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    keyed = {object_key(o): o for o in objects}
    assert len(keyed) == len(objects), "duplicate objects"
    return keyed


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [object_key(o) for o in found])
    return found[0]


def without_namespace_and_crds(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] not in ("Namespace", "CustomResourceDefinition")]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = only(objects, "Deployment", "webhook-operator")["spec"]["template"]["spec"]["containers"]
    return container


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


def test_examples_are_a_namespace_a_secret_two_subscriptions_and_events() -> None:
    assert EXAMPLES[0] == (
        "00-namespace.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    )
    kinds = [doc["kind"] for _, doc in EXAMPLES]
    assert kinds.count("Secret") == 1
    assert kinds.count("WebhookSubscription") == 2
    assert kinds.count("WebhookEvent") >= 3
    # `kubectl apply -f examples/` goes in file-name order: the namespace and the Secret first.
    first_subscription = kinds.index("WebhookSubscription")
    assert kinds.index("Namespace") < kinds.index("Secret") < first_subscription < kinds.index("WebhookEvent")


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
    assert orders["url"] == "http://localhost:8000/hooks/orders"
    invoices = example("WebhookSubscription", "invoices-to-billing")["spec"]
    assert invoices["format"] == "CloudEvents"
    assert invoices["eventTypes"] == ["invoice.paid"]
    assert invoices["url"].startswith("http://localhost:8000/")


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


@pytest.fixture(scope="module")
def with_service_monitor(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """deploy/base plus the servicemonitor component, as a user's overlay would combine them."""
    if kubectl() is None:
        pytest.skip("kubectl is not installed: building deploy/ needs `kubectl kustomize`")
    overlay = tmp_path_factory.mktemp("overlay")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY_DIR / "base", overlay)],
                "components": [os.path.relpath(DEPLOY_DIR / "components" / "servicemonitor", overlay)],
            }
        )
    )
    return kustomize_build(overlay)


def test_base_objects_are_valid(base: list[dict[str, Any]]) -> None:
    by_key(base)
    for obj in base:
        validate(obj)


def test_base_installs_the_crds_from_the_crds_folder(base: list[dict[str, Any]]) -> None:
    crds = {o["metadata"]["name"]: o for o in base if o["kind"] == "CustomResourceDefinition"}
    assert crds == {crd["metadata"]["name"]: crd for crd in load_crds().values()}


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
            ("Deployment", NAMESPACE, "webhook-operator"),
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


def test_deployment(base: list[dict[str, Any]]) -> None:
    deployment = only(base, "Deployment")
    spec = deployment["spec"]
    # No leader election: exactly one operator at any time, also during upgrades.
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
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
    assert container["args"] == ["run", "--metrics-port=8080", "--health-port=8081"]
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


def test_rbac_comments_explain_every_rule() -> None:
    text = (DEPLOY_DIR / "base" / "clusterrole.yaml").read_text()
    rule_lines = [i for i, line in enumerate(text.splitlines()) if line.startswith("- apiGroups:")]
    lines = text.splitlines()
    assert len(rule_lines) == len(OPERATOR_RULES) + len(DISCOVERY_RULES)
    for i in rule_lines:
        assert lines[i - 1].startswith("#"), lines[i]


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
        "--namespace=shop",
    ]


def test_service_monitor_component(with_service_monitor: list[dict[str, Any]]) -> None:
    monitor = only(with_service_monitor, "ServiceMonitor")
    validate(monitor)
    service = only(with_service_monitor, "Service", "webhook-operator-metrics")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == NAMESPACE
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


# ------------------------------------------------------------------------------------------
# The Helm chart

CHART_VALUE_SETS = {
    "defaults": {},
    "namespaced": {"namespaces": ["shop", "billing"]},
    "everything": {
        "image": {
            "repository": "registry.example.com/webhook-operator",
            "tag": "dev",
            "pullPolicy": "Always",
        },
        # Helm merges maps with the defaults; null removes a default (limits.cpu here).
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": None, "memory": "512Mi"},
        },
        "allowCidrs": ["10.0.0.0/8", "fd00::/8"],
        "metrics": {"enabled": True, "port": 9090},
        "serviceMonitor": {"enabled": True, "interval": "15s"},
    },
    "no-metrics": {"metrics": {"enabled": False}},
}


def test_chart_ships_the_crds_unchanged() -> None:
    chart_crds = sorted(p.name for p in (CHART_DIR / "crds").iterdir())
    assert chart_crds == sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    for name in chart_crds:
        assert (CHART_DIR / "crds" / name).read_bytes() == (CRD_DIR / name).read_bytes(), (
            f"deploy/helm/webhook-operator/crds/{name} differs from crds/{name}: copy it over"
        )


def test_chart_defaults_render_deploy_base(base: list[dict[str, Any]]) -> None:
    # The Namespace is helm's (--create-namespace); the CRDs come from the chart's crds/.
    assert by_key(render_chart()) == by_key(without_namespace_and_crds(base))


def test_chart_with_namespaces_renders_the_namespaced_overlay(namespaced: list[dict[str, Any]]) -> None:
    assert by_key(render_chart({"namespaces": ["shop"]})) == by_key(without_namespace_and_crds(namespaced))


def test_chart_service_monitor_is_the_component(with_service_monitor: list[dict[str, Any]]) -> None:
    rendered = only(render_chart({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    assert rendered == only(with_service_monitor, "ServiceMonitor")


@pytest.mark.parametrize("values", CHART_VALUE_SETS.values(), ids=CHART_VALUE_SETS.keys())
def test_chart_renders_valid_objects(values: dict[str, Any]) -> None:
    objects = render_chart(values)
    by_key(objects)
    for obj in objects:
        validate(obj)


def test_chart_values_reach_the_objects() -> None:
    objects = render_chart(CHART_VALUE_SETS["everything"])
    container = operator_container(objects)
    assert container["image"] == "registry.example.com/webhook-operator:dev"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert container["env"] == [{"name": "WEBHOOK_OPERATOR_ALLOW_CIDRS", "value": "10.0.0.0/8,fd00::/8"}]
    assert "--metrics-port=9090" in container["args"]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    assert only(objects, "Service")["spec"]["ports"][0]["port"] == 9090
    assert only(objects, "ServiceMonitor")["spec"]["endpoints"][0]["interval"] == "15s"


def test_chart_without_metrics_has_no_service_nor_metrics_port() -> None:
    objects = render_chart(CHART_VALUE_SETS["no-metrics"])
    assert [o for o in objects if o["kind"] == "Service"] == []
    container = operator_container(objects)
    assert not any(a.startswith("--metrics-port") for a in container["args"])
    assert [p["name"] for p in container["ports"]] == ["health"]


def test_chart_namespaces_get_a_role_binding_and_a_flag_each() -> None:
    objects = render_chart({"namespaces": ["shop", "billing"]})
    assert sorted(o["metadata"]["namespace"] for o in objects if o["kind"] == "RoleBinding") == [
        "billing",
        "billing",
        "shop",
        "shop",
    ]
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding"] == [
        "webhook-operator-discovery"
    ]
    assert operator_container(objects)["args"][-2:] == ["--namespace=shop", "--namespace=billing"]


def test_chart_image_tag_defaults_to_app_version() -> None:
    assert operator_container(render_chart({"image": {"tag": ""}}))["image"] == IMAGE


def test_chart_release_namespace_is_used_everywhere() -> None:
    objects = render_chart(release_namespace="platform")
    for obj in objects:
        if obj["kind"] in ("Deployment", "Service", "ServiceAccount"):
            assert obj["metadata"]["namespace"] == "platform"
        for subject in obj.get("subjects", []):
            assert subject["namespace"] == "platform"


def chart_values_schema() -> dict[str, Any]:
    return json.loads((CHART_DIR / "values.schema.json").read_text())


def test_chart_values_follow_their_schema() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    jsonschema.Draft7Validator(chart_values_schema()).validate(values)
    for override in CHART_VALUE_SETS.values():
        defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
        defaults.update(override)
        jsonschema.Draft7Validator(chart_values_schema()).validate(defaults)


@pytest.mark.parametrize(
    "bad",
    [
        {"namespaces": "shop"},
        {"namespaces": ["Shop_1"]},
        {"allowCidrs": "10.0.0.0/8"},
        {"metrics": {"enabled": True, "port": 8081}},
        {"imagee": {}},
    ],
)
def test_chart_values_schema_rejects_mistakes(bad: dict[str, Any]) -> None:
    values = {**yaml.safe_load((CHART_DIR / "values.yaml").read_text()), **bad}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(chart_values_schema()).validate(values)


def test_chart_versions_match_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["appVersion"] == project
    (deployment,) = load_yaml_docs(DEPLOY_DIR / "base" / "deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/openplatform/webhook-operator:{project}"


def test_chart_notes_render() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    notes = HelmSubset({}, "platform", "webhook-operator", chart).render(
        (CHART_DIR / "templates" / "NOTES.txt").read_text()
    )
    assert "kubectl -n platform rollout status deployment/webhook-operator" in notes


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed (the e2e workflow has it)")
@pytest.mark.parametrize("values", CHART_VALUE_SETS.values(), ids=CHART_VALUE_SETS.keys())
def test_real_helm_renders_what_the_subset_renders(values: dict[str, Any], tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm = shutil.which("helm")
    assert helm is not None
    out = subprocess.run(
        [
            helm,
            "template",
            "webhook-operator",
            str(CHART_DIR),
            "--namespace",
            NAMESPACE,
            "-f",
            str(values_file),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert by_key([d for d in yaml.safe_load_all(out) if d]) == by_key(render_chart(values))


# The renderer itself: Go template semantics for what the chart uses, errors for the rest.


def render(template: str, values: dict[str, Any] | None = None) -> str:
    chart = {"name": "c", "version": "1.0.0", "appVersion": "2.0.0"}
    return HelmSubset(values or {}, "ns", "rel", chart).render(template)


def test_subset_trims_whitespace_like_go_templates() -> None:
    assert render("a:\n  {{- if .Values.x }}\n  b: 1\n  {{- end }}\nc: 2", {"x": True}) == "a:\n  b: 1\nc: 2"
    assert render("a:\n  {{- if .Values.x }}\n  b: 1\n  {{- end }}\nc: 2", {"x": False}) == "a:\nc: 2"
    assert render("x: {{ .Values.a -}}  \n  y", {"a": 1}) == "x: 1y"


def test_subset_if_else_range_and_functions() -> None:
    template = (
        "{{- if .Values.ns }}{{ range .Values.ns }}[{{ . }}:{{ $.Release.Namespace }}]{{ end }}"
        '{{- else }}all{{ end }} {{ join "," .Values.cidrs | quote }} '
        "{{ .Values.tag | default .Chart.AppVersion }}"
        "{{ toYaml .Values.res | nindent 2 }}"
    )
    assert render(template, {"ns": ["a", "b"], "cidrs": ["x", "y"], "res": {"b": 1, "a": "1"}}) == (
        "[a:ns][b:ns] \"x,y\" 2.0.0\n  a: '1'\n  b: 1"
    )
    assert render(template, {"ns": [], "cidrs": [], "tag": "t", "res": {}}).startswith('all "" t')


@pytest.mark.parametrize(
    "template",
    [
        '{{ include "x" . }}',
        "{{ .Values.a | upper }}",
        "{{ .Values.m }}",  # a map needs toYaml
        "{{ if .Values.a }}no end",
        "{{ end }}",
        "{{ with .Values.a }}{{ end }}",
        "{{ range .Values.ns }}{{ .Values.x }}{{ end }}",  # inside range, . is the item
        "{{ .Nope }}",
    ],
)
def test_subset_refuses_what_it_does_not_implement(template: str) -> None:
    with pytest.raises(ValueError):
        render(template, {"a": "x", "m": {"k": 1}, "ns": ["n"]})


def test_chart_templates_use_only_the_subset() -> None:
    # No helper files (_helpers.tpl) the renderer would skip; every template renders under
    # every value set without leaving the subset.
    others = {p.name for p in (CHART_DIR / "templates").iterdir() if not p.name.endswith(".yaml")}
    assert others <= {"NOTES.txt"}
    for values in CHART_VALUE_SETS.values():
        assert render_chart(values)


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

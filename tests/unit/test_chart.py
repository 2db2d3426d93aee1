"""The Helm chart, rendered by Helm's own engine (helm-python-sdk: Helm's Go SDK), against
deploy/: the defaults are deploy/base, `namespaces` the namespaced overlay, the optional parts
the Kustomize components; every value that changes the output is rendered and checked.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.unit.manifests_support import (
    CHART_DIR,
    CRD_DIR,
    DEPLOY_DIR,
    IMAGE,
    NAMESPACE,
    ROOT,
    by_key,
    kubectl,
    kustomize_build,
    load_yaml_docs,
    object_key,
    only,
    operator_container,
    render_chart,
    render_chart_manifests,
    validate,
)

# Labels only one of the two tools sets, and the CRDs' tool-specific keep annotations.
TOOL_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"namespaces": ["shop", "billing"]},
    "everything": {
        "image": {
            "repository": "registry.example.com/webhook-operator",
            "tag": "dev",
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        # Helm merges maps with the defaults; null removes a default (limits.cpu here).
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": None, "memory": "512Mi"},
        },
        "allowCidrs": ["10.96.0.0/12", "fd00::/8"],
        "extraArgs": ["--disable-after-failures=500"],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"team": "platform"},
        "serviceAccount": {"annotations": {"iam.example.com/role": "webhooks"}},
        "metrics": {"enabled": True, "port": 9090},
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "networkPolicy": {"enabled": True, "apiServerPorts": [6443]},
    },
    "no-metrics": {"metrics": {"enabled": False}},
    "nothing-optional": {
        "podDisruptionBudget": {"enabled": False},
        "rbac": {"userRoles": False},
        "crds": {"install": False},
    },
    "crds-not-kept": {"crds": {"keep": False}},
    "renamed": {"fullnameOverride": "hooks"},
}


def without_tool_labels(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = dict(obj["metadata"])
    labels = {k: v for k, v in metadata.pop("labels", {}).items() if k not in TOOL_LABELS}
    if labels:
        metadata["labels"] = labels
    spec = obj.get("spec")
    if obj["kind"] == "Deployment":
        template = dict(spec["template"])
        template["metadata"] = without_tool_labels({"kind": "", "metadata": template["metadata"]})["metadata"]
        spec = {**spec, "template": template}
    return {**obj, "metadata": metadata, **({"spec": spec} if spec is not None else {})}


def comparable(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The objects by key, without the Namespace (helm's --create-namespace), the CRDs (compared
    on their own) and the labels only one tool sets."""
    return by_key(
        [
            without_tool_labels(o)
            for o in objects
            if o["kind"] not in ("Namespace", "CustomResourceDefinition")
        ]
    )


def kustomize(*components: str, tmp_path: Path, base: str = "base") -> list[dict[str, Any]]:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: building deploy/ needs `kubectl kustomize`")
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY_DIR / base, tmp_path)],
                "components": [os.path.relpath(DEPLOY_DIR / "components" / c, tmp_path) for c in components],
            }
        )
    )
    return kustomize_build(tmp_path)


# ------------------------------------------------------------------------------------------
# The chart is deploy/


def test_chart_ships_the_crds_unchanged() -> None:
    chart_crds = CHART_DIR / "files" / "crds"
    assert sorted(p.name for p in chart_crds.iterdir()) == sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    for path in chart_crds.iterdir():
        assert path.read_bytes() == (CRD_DIR / path.name).read_bytes(), (
            f"deploy/helm/webhook-operator/files/crds/{path.name} differs from crds/{path.name}: copy it over"
        )


def test_chart_defaults_render_deploy_base(tmp_path: Path) -> None:
    assert comparable(render_chart()) == comparable(kustomize(tmp_path=tmp_path))


def test_chart_with_namespaces_renders_the_namespaced_overlay() -> None:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: building deploy/ needs `kubectl kustomize`")
    overlay = kustomize_build(DEPLOY_DIR / "overlays" / "namespaced")
    assert comparable(render_chart({"namespaces": ["shop"]})) == comparable(overlay)


def test_chart_optional_parts_are_the_components(tmp_path: Path) -> None:
    values = {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "networkPolicy": {"enabled": True},
    }
    components = kustomize("servicemonitor", "prometheusrule", "networkpolicy", tmp_path=tmp_path)
    assert comparable(render_chart(values)) == comparable(components)


def test_chart_installs_the_crds_and_keeps_them_on_uninstall() -> None:
    crds = {o["metadata"]["name"]: o for o in render_chart() if o["kind"] == "CustomResourceDefinition"}
    for path in CRD_DIR.glob("*.yaml"):
        (original,) = load_yaml_docs(path)
        rendered = crds.pop(original["metadata"]["name"])
        assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert rendered["metadata"]["labels"]["app.kubernetes.io/component"] == "crd"
        assert {k: v for k, v in rendered.items() if k != "metadata"} == {
            k: v for k, v in original.items() if k != "metadata"
        }
    assert crds == {}
    for obj in render_chart(VALUE_SETS["crds-not-kept"]):
        if obj["kind"] == "CustomResourceDefinition":
            assert "annotations" not in obj["metadata"]
    assert not [
        o for o in render_chart(VALUE_SETS["nothing-optional"]) if o["kind"] == "CustomResourceDefinition"
    ]


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_chart_renders_valid_objects(values: dict[str, Any]) -> None:
    objects = render_chart(values)
    by_key(objects)
    for obj in objects:
        validate(obj)
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == "webhook-operator"
        assert labels["helm.sh/chart"].startswith("webhook-operator-")


# ------------------------------------------------------------------------------------------
# Values reach the objects


def test_chart_values_reach_the_deployment() -> None:
    values = VALUE_SETS["everything"]
    objects = render_chart(values)
    pod = only(objects, "Deployment")["spec"]["template"]
    container = operator_container(objects)
    assert container["image"] == "registry.example.com/webhook-operator:dev"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert container["env"] == [{"name": "WEBHOOK_OPERATOR_ALLOW_CIDRS", "value": "10.96.0.0/12,fd00::/8"}]
    assert container["args"] == [
        "run",
        "--metrics-port=9090",
        "--health-port=8081",
        "--leader-elect",
        "--disable-after-failures=500",
    ]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    for key in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod["spec"][key] == values[key], key
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    sa = only(objects, "ServiceAccount")
    assert sa["metadata"]["annotations"] == values["serviceAccount"]["annotations"]


def test_chart_defaults_leave_the_optional_pod_fields_out() -> None:
    pod = only(render_chart(), "Deployment")["spec"]["template"]
    assert "annotations" not in pod["metadata"]
    for key in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert key not in pod["spec"], key


def test_chart_monitoring_values_reach_the_objects() -> None:
    objects = render_chart(VALUE_SETS["everything"])
    monitor = only(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert only(objects, "Service")["spec"]["ports"][0]["port"] == 9090
    rule = only(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    down = next(r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "WebhookOperatorDown")
    assert down["expr"] == 'absent(up{job="webhook-operator-metrics", namespace="webhook-operator"} == 1)'
    # Prometheus's own template syntax reaches the rule untouched by Helm's.
    disabled = rule["spec"]["groups"][0]["rules"][0]
    assert "{{ $labels.namespace }}/{{ $labels.subscription }}" in disabled["annotations"]["summary"]


def test_chart_network_policy_opens_the_allowed_ranges_and_api_ports() -> None:
    policy = only(render_chart(VALUE_SETS["everything"]), "NetworkPolicy")["spec"]
    _dns, api, _public, allowed = policy["egress"]
    assert api == {"ports": [{"port": 6443, "protocol": "TCP"}]}
    assert allowed == {"to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}, {"ipBlock": {"cidr": "fd00::/8"}}]}


def test_chart_without_metrics_has_no_service_nor_metrics_port() -> None:
    objects = render_chart(VALUE_SETS["no-metrics"])
    assert [o for o in objects if o["kind"] == "Service"] == []
    container = operator_container(objects)
    assert not any(a.startswith("--metrics-port") for a in container["args"])
    assert [p["name"] for p in container["ports"]] == ["health"]


@pytest.mark.parametrize("part", ["serviceMonitor", "prometheusRule"])
def test_chart_monitoring_without_metrics_is_refused_with_a_reason(part: str) -> None:
    with pytest.raises(helm_python.HelmError, match=f"{part}.enabled needs metrics.enabled"):
        render_chart({"metrics": {"enabled": False}, part: {"enabled": True}})


def test_chart_optional_parts_can_be_left_out() -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in render_chart(VALUE_SETS["nothing-optional"])}
    assert ("PodDisruptionBudget", "webhook-operator") not in kinds
    assert not {name for kind, name in kinds if kind == "ClusterRole"} & {
        "webhook-operator-publisher",
        "webhook-operator-edit",
        "webhook-operator-view",
    }


def test_chart_namespaces_get_a_role_binding_and_a_flag_each() -> None:
    objects = render_chart({"namespaces": ["shop", "billing"]})
    bindings = [
        o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "webhook-operator"
    ]
    assert sorted(o["metadata"]["namespace"] for o in bindings) == [
        "billing",
        "shop",
    ]
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding"] == [
        "webhook-operator-discovery"
    ]
    assert operator_container(objects)["args"][-2:] == ["--namespace=shop", "--namespace=billing"]


def test_chart_namespace_patterns_are_passed_on_and_bound_cluster_wide() -> None:
    objects = render_chart({"namespaces": ["team-*,!team-skip*", "shop"]})
    assert [
        o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "webhook-operator"
    ] == []
    assert sorted(o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding") == [
        "webhook-operator",
        "webhook-operator-discovery",
        "webhook-operator-sources",
    ]
    assert operator_container(objects)["args"][-2:] == ["--namespace=team-*,!team-skip*", "--namespace=shop"]


def test_chart_without_leader_election_runs_one_replica_replaced_with_recreate() -> None:
    objects = render_chart({"leaderElection": {"enabled": False}, "replicas": 3})
    spec = only(objects, "Deployment")["spec"]
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})
    assert "--leader-elect" not in operator_container(objects)["args"]
    assert [o for o in objects if o["kind"] == "Role"] == []


def test_chart_shards_are_one_deployment_each_with_its_own_lease() -> None:
    objects = render_chart({"shards": 3, "replicas": 2})
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert [d["metadata"]["name"] for d in deployments] == [f"webhook-operator-shard-{i}" for i in range(3)]
    selectors = [d["spec"]["selector"]["matchLabels"] for d in deployments]
    assert len({json.dumps(s, sort_keys=True) for s in selectors}) == 3, (
        "shards must not adopt each other's pods"
    )
    for index, deployment in enumerate(deployments):
        assert deployment["spec"]["replicas"] == 2
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        assert container["args"][-3:] == ["--leader-elect", f"--shard-index={index}", "--shard-count=3"]
    (role,) = [o for o in objects if o["kind"] == "Role"]
    assert role["rules"][1]["resourceNames"] == [f"webhook-operator-shard-{i}" for i in range(3)]


def test_chart_image_tag_defaults_to_app_version() -> None:
    assert operator_container(render_chart({"image": {"tag": ""}}))["image"] == IMAGE


def test_chart_release_namespace_is_used_everywhere() -> None:
    for obj in render_chart(VALUE_SETS["everything"], release_namespace="platform"):
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            assert obj["metadata"]["namespace"] == "platform", object_key(obj)
        for subject in obj.get("subjects", []):
            assert subject["namespace"] == "platform"


# ------------------------------------------------------------------------------------------
# Names: two releases side by side


def cluster_scoped_names(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if "namespace" not in o["metadata"] and o["kind"] != "CustomResourceDefinition"
    }


def test_two_releases_share_no_cluster_scoped_name() -> None:
    first = render_chart(release_name="webhook-operator")
    second = render_chart({"crds": {"install": False}}, release_name="team-b", release_namespace="team-b")
    assert cluster_scoped_names(first) & cluster_scoped_names(second) == set()
    assert ("ClusterRole", "team-b-webhook-operator-publisher") in cluster_scoped_names(second)
    # Every binding points at its own release's role and service account.
    for binding in (o for o in second if o["kind"].endswith("Binding")):
        assert binding["roleRef"]["name"].startswith("team-b-webhook-operator")
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "team-b-webhook-operator", "namespace": "team-b"}
        ]
    # Selectors tell the releases' pods apart.
    selector = only(second, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/instance"] == "team-b"


def test_fullname_override_names_every_object() -> None:
    objects = render_chart(VALUE_SETS["renamed"])
    for obj in objects:
        if obj["kind"] != "CustomResourceDefinition":
            assert obj["metadata"]["name"].startswith("hooks"), object_key(obj)
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "hooks"


# ------------------------------------------------------------------------------------------
# Values schema, lint, notes, versions


@pytest.mark.parametrize(
    "bad",
    [
        {"namespaces": "shop"},
        {"namespaces": ["Shop_1"]},
        {"allowCidrs": "10.0.0.0/8"},
        {"metrics": {"enabled": True, "port": 8081}},
        {"imagee": {}},
        {"extraArgs": ["run"]},
        {"serviceMonitor": {"labels": {"release": 1}}},
        {"networkPolicy": {"apiServerPorts": []}},
        {"crds": {"keep": "yes"}},
    ],
)
def test_chart_values_schema_rejects_mistakes(bad: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render_chart(bad)


def test_chart_passes_helm_lint() -> None:
    for values in VALUE_SETS.values():
        result = helm_python.lint(str(CHART_DIR), values, strict=True, namespace=NAMESPACE)
        assert result["errors"] == [], result
        # Severity 1 is INFO (an icon is recommended); warnings and errors are 2 and above.
        assert [m for m in result["messages"] if m["severity"] > 1] == [], result


def test_chart_notes_render() -> None:
    notes = render_chart_manifests(release_namespace="platform")["webhook-operator/templates/NOTES.txt"]
    assert "kubectl -n platform rollout status deployment/webhook-operator" in notes
    assert "allowCidrs" in notes  # in-cluster receivers need it
    assert "webhook-operator-publisher" in notes
    notes = render_chart_manifests({"allowCidrs": ["10.96.0.0/12"]})["webhook-operator/templates/NOTES.txt"]
    assert "allowCidrs" not in notes


def test_chart_versions_match_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["appVersion"] == project
    (deployment,) = load_yaml_docs(DEPLOY_DIR / "base" / "deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/openplatform/webhook-operator:{project}"
    assert NAMESPACE == "webhook-operator"

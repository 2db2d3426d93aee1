"""WebhookSource's pure parts: the spec, type names, what counts as a change, the projection
of large objects, event names, coalescing; and the CRD accepting and refusing sources."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.manifests_support import GROUP, validate_custom_resource
from webhook_operator.domain.sources import (
    Pending,
    SourceSpec,
    classify,
    event_data,
    event_name,
    event_type,
    fingerprint,
    forbidden_kind,
    label_selector,
    object_path,
    parse_source_spec,
)
from webhook_operator.domain.specs import SpecProblem


def spec(**fields: Any) -> SourceSpec:
    parsed = parse_source_spec({"resource": {"apiVersion": "v1", "kind": "ConfigMap"}, **fields})
    assert isinstance(parsed, SourceSpec), parsed
    return parsed


def configmap(
    data: dict[str, str], *, uid: str = "0f1e2d3c-aaaa", rv: str = "10", **meta: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "shop", "uid": uid, "resourceVersion": rv, **meta},
        "data": data,
    }


# -- the spec ----------------------------------------------------------------------------------


def test_defaults_are_every_change_ten_a_second_and_the_lowercase_kind_as_prefix() -> None:
    parsed = spec()
    assert parsed.on == {"Added", "Modified", "Deleted"}
    assert parsed.max_events_per_second == 10.0
    assert parsed.type_prefix == "configmap."
    assert [event_type(parsed, change) for change in ("Added", "Modified", "Deleted")] == [
        "configmap.added",
        "configmap.modified",
        "configmap.deleted",
    ]


def test_a_type_prefix_is_used_as_given() -> None:
    parsed = spec(typePrefix="shop.settings/")
    assert event_type(parsed, "Modified") == "shop.settings/modified"


def test_group_and_version_are_split_for_grouped_and_core_kinds() -> None:
    deployments = parse_source_spec({"resource": {"apiVersion": "apps/v1", "kind": "Deployment"}})
    assert isinstance(deployments, SourceSpec)
    assert (deployments.group, deployments.version) == ("apps", "v1")
    assert (
        object_path(deployments, "deployments", "shop", "web")
        == "/apis/apps/v1/namespaces/shop/deployments/web"
    )
    assert object_path(spec(), "configmaps", "shop", "a") == "/api/v1/namespaces/shop/configmaps/a"


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({}, "spec.resource"),
        ({"resource": {"apiVersion": "v1"}}, "apiVersion and kind"),
        ({"resource": {"apiVersion": "v1", "kind": "ConfigMap"}, "on": ["Created"]}, "spec.on"),
        (
            {"resource": {"apiVersion": "v1", "kind": "ConfigMap"}, "maxEventsPerSecond": 0},
            "maxEventsPerSecond",
        ),
        (
            {
                "resource": {"apiVersion": "v1", "kind": "ConfigMap"},
                "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]},
            },
            "operator",
        ),
    ],
)
def test_a_bad_spec_is_a_problem_naming_the_field(bad: dict[str, Any], says: str) -> None:
    problem = parse_source_spec(bad)
    assert isinstance(problem, SpecProblem)
    assert problem.reason == "InvalidSpec"
    assert says in problem.message


def test_label_selectors_become_the_query_the_api_takes() -> None:
    selector = {
        "matchLabels": {"app": "shop", "tier": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "owner", "operator": "Exists"},
            {"key": "zone", "operator": "NotIn", "values": ["b"]},
        ],
    }
    assert label_selector(selector) == "app=shop,tier=web,env in (prod,staging),!legacy,owner,zone notin (b)"
    assert label_selector(None) == ""


def test_secrets_are_forbidden_whatever_the_version_but_only_in_the_core_group() -> None:
    assert forbidden_kind(spec(resource={"apiVersion": "v1", "kind": "Secret"})) is not None
    lookalike = parse_source_spec({"resource": {"apiVersion": "example.com/v1", "kind": "Secret"}})
    assert isinstance(lookalike, SourceSpec)
    assert forbidden_kind(lookalike) is None
    assert forbidden_kind(spec()) is None


# -- no storms: what counts as a change ----------------------------------------------------------


def test_metadata_and_status_changes_keep_the_fingerprint_content_changes_do_not() -> None:
    before = fingerprint(configmap({"color": "blue"}))
    assert fingerprint(configmap({"color": "blue"}, rv="11", labels={"team": "web"})) == before
    assert fingerprint(configmap({"color": "blue"}, annotations={"note": "x"}, generation=3)) == before
    assert fingerprint({**configmap({"color": "blue"}), "status": {"ready": True}}) == before
    assert fingerprint(configmap({"color": "green"})) != before


def test_classify_compares_what_was_emitted_with_the_current_state() -> None:
    blue, green = fingerprint(configmap({"color": "blue"})), fingerprint(configmap({"color": "green"}))
    recreated = fingerprint(configmap({"color": "blue"}, uid="99999999-bbbb"))
    assert classify(None, blue) == ["Added"]
    assert classify(blue, blue) == []  # a resync or a relist after a restart
    assert classify(blue, green) == ["Modified"]
    assert classify(blue, None) == ["Deleted"]
    assert classify(None, None) == []  # added and deleted before its turn: nothing
    assert classify(blue, recreated) == ["Deleted", "Added"]  # a new object under the same name


# -- the payload ------------------------------------------------------------------------------


def test_data_is_the_object_without_managed_fields() -> None:
    obj = configmap({"color": "blue"}, managedFields=[{"manager": "kubectl"}], labels={"app": "shop"})
    data = event_data(obj)
    assert "managedFields" not in data["metadata"]
    assert data["metadata"]["labels"] == {"app": "shop"}
    assert data["data"] == {"color": "blue"}
    assert "managedFields" in obj["metadata"]  # the input is not changed


def test_an_object_over_the_limit_is_projected_never_refused() -> None:
    big = configmap({"blob": "x" * 5000}, labels={"app": "shop"}, annotations={"huge": "y" * 5000})
    data = event_data(big, max_bytes=1024)
    assert data == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "settings", "namespace": "shop", "uid": "0f1e2d3c-aaaa", "resourceVersion": "10",
            "labels": {"app": "shop"},
        },
        "truncated": True,
    }  # fmt: skip
    assert len(json.dumps(data)) < 1024


# -- idempotent names -------------------------------------------------------------------------


def test_event_names_are_deterministic_distinct_per_change_and_valid() -> None:
    name = event_name("shop-config", "settings", "Modified", "10")
    assert name == event_name("shop-config", "settings", "Modified", "10")  # a retry: 409, not a duplicate
    assert name != event_name("shop-config", "settings", "Modified", "11")
    assert name != event_name("shop-config", "settings", "Deleted", "10")
    assert name != event_name("shop-config", "other", "Modified", "10")
    long = event_name("s" * 253, "settings", "Added", "1")
    assert len(long) <= 253
    assert all(c.isalnum() or c == "-" for c in long)


# -- coalescing under the rate cap ---------------------------------------------------------------


def test_pending_keeps_the_latest_state_per_object_and_counts_what_it_replaced() -> None:
    pending = Pending()
    pending.put("a", True, configmap({"v": "1"}))
    pending.put("b", True, configmap({"v": "x"}))
    pending.put("a", True, configmap({"v": "2"}))
    pending.put("a", False, configmap({"v": "2"}))
    assert pending.coalesced == 2
    assert pending.take() == ("b", True, configmap({"v": "x"}))
    assert pending.take() == ("a", False, configmap({"v": "2"}))
    assert pending.latest == {}


# -- the CRD ---------------------------------------------------------------------------------------


def source(**spec_fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "WebhookSource",
        "metadata": {"name": "s", "namespace": "shop"},
        "spec": {"resource": {"apiVersion": "v1", "kind": "ConfigMap"}, **spec_fields},
    }


def test_the_crd_accepts_a_full_source() -> None:
    full = source(
        selector={
            "matchLabels": {"app": "shop"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["a"]}],
        },
        on=["Added", "Deleted"],
        typePrefix="shop.config.",
        maxEventsPerSecond=2.5,
    )
    assert validate_custom_resource(full) == []


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"typePrefix": "-bad"}, "typePrefix"),
        ({"selector": {"matchExpressions": [{"key": "env", "operator": "In"}]}}, "matchExpressions"),
        (
            {"selector": {"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["a"]}]}},
            "matchExpressions",
        ),
        ({"maxEventsPerSecond": 0}, "maxEventsPerSecond"),
        ({"on": ["Created"]}, "on"),
        ({"resource": {"apiVersion": "v1", "kind": "configmap"}}, "kind"),
    ],
)
def test_the_crd_refuses_a_bad_source(fields: dict[str, Any], says: str) -> None:
    errors = validate_custom_resource(source(**fields))
    assert errors
    assert any(says in error for error in errors), errors

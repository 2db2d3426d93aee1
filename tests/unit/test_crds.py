"""The CRDs in crds/ are what a real API server accepts and what docs/design.md promises.

No API server runs here, so each property an API server would check is checked directly:
the CRD object against the apiextensions.k8s.io/v1 schema (kubernetes-validate), the
structural schema rules, CEL rules parsed and run with the CEL library, printer columns
against the schema. Then sample resources go through our schemas the way the API server
would take them (defaults, OpenAPI validation, CEL rules): good ones pass, bad ones are
rejected for the right reason.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.unit.manifests_support import (
    GROUP,
    K8S_MIN_VERSION,
    apply_defaults,
    cel_compile_errors,
    cel_evaluate,
    crd_files,
    crd_schema,
    load_crds,
    load_yaml_docs,
    served_version,
    structural_errors,
    to_json_schema,
    validate_custom_resource,
    validation_rules,
    walk_schema,
)
from webhook_operator.domain.backoff import DEFAULT_RETRY, RetryPolicy
from webhook_operator.domain.specs import parse_subscription_spec

K8S_LATEST = ".".join(kubernetes_validate.latest_version().split(".")[:2])
CRDS = load_crds()
KINDS = ["WebhookSubscription", "WebhookEvent", "WebhookSource"]
API_VERSION = f"{GROUP}/v1alpha1"


def schema(kind: str) -> dict[str, Any]:
    return crd_schema(CRDS[kind])


def node(kind: str, path: str) -> dict[str, Any]:
    """The schema node at a dotted path such as "spec.retry.maxAttempts"; [] steps into items."""
    current = schema(kind)
    for part in path.split("."):
        if part == "[]":
            current = current["items"]
        elif part == "{}":
            current = current["additionalProperties"]
        else:
            current = current["properties"][part]
    return current


# ------------------------------------------------------------------------------------------
# The CRD objects


def test_one_crd_per_file_for_both_kinds() -> None:
    kinds = []
    for path in crd_files():
        docs = load_yaml_docs(path)
        assert len(docs) == 1, path
        assert docs[0]["kind"] == "CustomResourceDefinition", path
        kinds.append(docs[0]["spec"]["names"]["kind"])
    assert sorted(kinds) == sorted(KINDS)


@pytest.mark.parametrize("version", [K8S_MIN_VERSION, K8S_LATEST])
@pytest.mark.parametrize("kind", KINDS)
def test_crd_is_a_valid_apiextensions_v1_object(kind: str, version: str) -> None:
    # strict: unknown keys anywhere (a misspelt `descripton`, `x-kubernetes-validation`) fail.
    kubernetes_validate.validate(CRDS[kind], version, strict=True)


def test_the_crd_validator_catches_a_misspelt_key() -> None:
    broken = copy.deepcopy(CRDS["WebhookEvent"])
    crd_schema(broken)["properties"]["spec"]["properties"]["type"]["maxLenght"] = 256
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_LATEST, strict=True)


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [("WebhookSubscription", "webhooksubscriptions", "whsub"), ("WebhookEvent", "webhookevents", "whev")],
)
def test_names_group_scope_and_version(kind: str, plural: str, short: str) -> None:
    crd = CRDS[kind]
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["plural"] == plural
    assert names["singular"] == kind.lower()
    assert names["listKind"] == f"{kind}List"
    assert names["shortNames"] == [short]
    # `kubectl get webhooks` lists both kinds.
    assert names["categories"] == ["webhooks"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


# ------------------------------------------------------------------------------------------
# Structural schemas


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural(kind: str) -> None:
    assert structural_errors(schema(kind)) == []


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ({"type": "object", "properties": {"a": {"description": "no type"}}}, "type must not be empty"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "object", "properties": {}, "additionalProperties": {}}},
            },
            "mutually exclusive",
        ),
        ({"type": "object", "properties": {"metadata": {"type": "object", "description": "x"}}}, ".metadata"),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "single items schema"),
        ({"type": "object", "properties": {"a": {"type": "object", "additionalProperties": False}}}, "false"),
        ({"type": "object", "properties": {"a": {"$ref": "#/definitions/x"}}}, "$ref"),
        (
            {
                "type": "object",
                "properties": {
                    "a": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                    }
                },
            },
            "must be required or defaulted",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": [{"properties": {"b": {}}}]},
            "not specified outside",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "allOf": [{"type": "string"}]}}},
            "inside allOf",
        ),
    ],
)
def test_the_structural_checker_rejects_what_the_api_server_rejects(
    broken: dict[str, Any], expected: str
) -> None:
    errors = structural_errors(broken)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_has_a_description(kind: str) -> None:
    # `kubectl explain` must be useful. The root metadata is the one exception: the API server
    # forbids anything but `type: object` there, and explain shows ObjectMeta's own docs.
    missing = [
        path or "<root>"
        for path, sub in walk_schema(schema(kind))
        if path != ".metadata" and not str(sub.get("description", "")).strip()
    ]
    assert missing == []


@pytest.mark.parametrize("kind", KINDS)
def test_status_is_fully_specified(kind: str) -> None:
    # Unknown fields in status would be kept unvalidated and undocumented.
    status = node(kind, "status")
    offenders = [p for p, sub in walk_schema(status) if sub.get("x-kubernetes-preserve-unknown-fields")]
    assert offenders == []


def test_only_event_data_preserves_unknown_fields() -> None:
    preserved = [
        (kind, path)
        for kind in KINDS
        for path, sub in walk_schema(schema(kind))
        if sub.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert preserved == [("WebhookEvent", ".spec.data")]
    data = node("WebhookEvent", "spec.data")
    assert data["type"] == "object"


# ------------------------------------------------------------------------------------------
# The status shape of docs/design.md

SUBSCRIPTION_STATUS = {
    "observedGeneration", "conditions", "deliveredCount", "failedCount", "consecutiveFailures",
    "failingSince", "lastDeliveryTime", "lastSuccessTime", "endpointDisabled", "reenabled",
    "signing", "recovery",
}  # fmt: skip
EVENT_STATUS = {
    "observedGeneration", "conditions", "deliveries", "succeeded", "failed", "pending",
    "completionTime", "redelivered", "creationResourceVersion",
}  # fmt: skip
DELIVERY_FIELDS = {
    "subscription", "state", "attempts", "lastStatusCode", "lastError", "reason", "lastAttemptTime",
    "nextAttemptTime", "succeededTime",
}  # fmt: skip


def test_status_fields_are_the_designed_ones() -> None:
    assert set(node("WebhookSubscription", "status")["properties"]) == SUBSCRIPTION_STATUS
    assert set(node("WebhookEvent", "status")["properties"]) == EVENT_STATUS
    assert set(node("WebhookEvent", "status.deliveries.[]")["properties"]) == DELIVERY_FIELDS
    disabled = node("WebhookSubscription", "status.endpointDisabled")
    assert set(disabled["properties"]) == {"reason", "message", "since", "generation"}
    assert disabled["properties"]["reason"]["enum"] == ["Gone", "SustainedFailure"]


def test_deliveries_are_a_map_list_keyed_by_subscription() -> None:
    deliveries = node("WebhookEvent", "status.deliveries")
    assert deliveries["x-kubernetes-list-type"] == "map"
    assert deliveries["x-kubernetes-list-map-keys"] == ["subscription"]
    assert "subscription" in deliveries["items"]["required"]
    assert deliveries["items"]["properties"]["state"]["enum"] == [
        "Pending", "InFlight", "Retrying", "Succeeded", "Failed",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_conditions_have_the_metav1_condition_shape(kind: str) -> None:
    conditions = node(kind, "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["properties"]) == {
        "type", "status", "observedGeneration", "lastTransitionTime", "reason", "message",
    }  # fmt: skip
    assert sorted(item["required"]) == sorted(["type", "status", "lastTransitionTime", "reason", "message"])
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("WebhookSubscription", "status.failingSince"),
        ("WebhookSubscription", "status.lastDeliveryTime"),
        ("WebhookSubscription", "status.lastSuccessTime"),
        ("WebhookSubscription", "status.endpointDisabled.since"),
        ("WebhookEvent", "status.completionTime"),
        ("WebhookEvent", "status.deliveries.[].lastAttemptTime"),
        ("WebhookEvent", "status.deliveries.[].nextAttemptTime"),
        ("WebhookEvent", "status.deliveries.[].succeededTime"),
    ],
)
def test_times_are_rfc3339(kind: str, path: str) -> None:
    assert node(kind, path) == {**node(kind, path), "type": "string", "format": "date-time"}


# ------------------------------------------------------------------------------------------
# Limits, defaults and enums of docs/design.md

LIMITS = [
    ("WebhookSubscription", "spec.url", "maxLength", 2048),
    ("WebhookSubscription", "spec.headers", "maxProperties", 32),
    ("WebhookSubscription", "spec.headers.{}", "maxLength", 1024),
    ("WebhookSubscription", "spec.eventTypes", "maxItems", 64),
    ("WebhookSubscription", "spec.eventTypes.[]", "maxLength", 256),
    ("WebhookSubscription", "spec.timeoutSeconds", "minimum", 1),
    ("WebhookSubscription", "spec.timeoutSeconds", "maximum", 60),
    ("WebhookSubscription", "spec.timeoutSeconds", "default", 10),
    ("WebhookSubscription", "spec.retry.maxAttempts", "minimum", 1),
    ("WebhookSubscription", "spec.retry.maxAttempts", "maximum", 50),
    ("WebhookSubscription", "spec.retry.maxAttempts", "default", 8),
    ("WebhookSubscription", "spec.retry.backoff", "enum", ["Exponential", "Linear"]),
    ("WebhookSubscription", "spec.retry.backoff", "default", "Exponential"),
    ("WebhookSubscription", "spec.retry.initialDelaySeconds", "default", 5),
    ("WebhookSubscription", "spec.retry.initialDelaySeconds", "minimum", 0),
    ("WebhookSubscription", "spec.retry.initialDelaySeconds", "maximum", 86400),
    ("WebhookSubscription", "spec.retry.maxDelaySeconds", "default", 3600),
    ("WebhookSubscription", "spec.retry.maxDelaySeconds", "minimum", 1),
    ("WebhookSubscription", "spec.retry.maxDelaySeconds", "maximum", 86400),
    ("WebhookSubscription", "spec.maxInFlight", "minimum", 1),
    ("WebhookSubscription", "spec.maxInFlight", "maximum", 1000),
    ("WebhookSubscription", "spec.maxInFlight", "default", 10),
    ("WebhookSubscription", "spec.format", "enum", ["StandardWebhooks", "CloudEvents"]),
    ("WebhookSubscription", "spec.format", "default", "StandardWebhooks"),
    ("WebhookSubscription", "spec.paused", "default", False),
    ("WebhookEvent", "spec.type", "maxLength", 256),
    ("WebhookEvent", "spec.subscriptions", "maxItems", 100),
    ("WebhookEvent", "spec.ttlSecondsAfterFinished", "minimum", 0),
]


@pytest.mark.parametrize(("kind", "path", "key", "value"), LIMITS)
def test_design_limits(kind: str, path: str, key: str, value: Any) -> None:
    assert node(kind, path)[key] == value


def test_required_fields() -> None:
    assert schema("WebhookSubscription")["required"] == ["spec"]
    assert node("WebhookSubscription", "spec")["required"] == ["url"]
    assert node("WebhookSubscription", "spec.signing")["required"] == ["secretRef"]
    assert schema("WebhookEvent")["required"] == ["spec"]
    assert sorted(node("WebhookEvent", "spec")["required"]) == ["data", "type"]


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_and_enums_are_consistent(kind: str) -> None:
    checked = 0
    for path, sub in walk_schema(schema(kind)):
        if "enum" in sub:
            assert len(set(map(str, sub["enum"]))) == len(sub["enum"]), path
            assert all(isinstance(v, str) for v in sub["enum"]) == (sub["type"] == "string"), path
        if "default" in sub:
            checked += 1
            # A default must itself be valid (after its own nested defaults), as the API
            # server requires, and lie inside its enum and bounds.
            value = apply_defaults(sub, sub["default"])
            jsonschema.Draft7Validator(to_json_schema(sub, root=False)).validate(value)
            if "enum" in sub:
                assert sub["default"] in sub["enum"], path
    assert checked > 0 or kind == "WebhookEvent"


def test_an_omitted_retry_block_stays_omitted_so_the_operator_applies_the_standard_schedule() -> None:
    # The API server must not fill in an Exponential policy: an omitted retry means the
    # Standard Webhooks schedule (domain DEFAULT_RETRY), which no field values can express.
    minimal = {"url": "https://example.com/hook"}
    defaulted = apply_defaults(node("WebhookSubscription", "spec"), minimal)
    assert defaulted == {
        "url": "https://example.com/hook",
        "paused": False,
        "format": "StandardWebhooks",
        "timeoutSeconds": 10,
        "maxInFlight": 10,
        "ordering": "Unordered",
    }
    assert parse_subscription_spec(defaulted).retry == DEFAULT_RETRY  # type: ignore[union-attr]


def test_an_explicit_retry_block_gets_the_same_field_defaults_as_before() -> None:
    defaulted = apply_defaults(node("WebhookSubscription", "spec"), {"url": "https://e.com/", "retry": {}})
    assert defaulted["retry"] == {
        "maxAttempts": 8,
        "backoff": "Exponential",
        "initialDelaySeconds": 5,
        "maxDelaySeconds": 3600,
    }
    assert parse_subscription_spec(defaulted).retry == RetryPolicy()  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------
# CEL rules

ALL_RULES = [
    pytest.param(node_, rule, id=f"{kind}{path}:{rule['rule'][:40]}")
    for kind in KINDS
    for path, node_, rule in validation_rules(schema(kind))
]


def test_the_expected_rules_exist() -> None:
    def rules(kind: str, path: str) -> list[str]:
        return [r["rule"] for r in node(kind, path).get("x-kubernetes-validations", [])]

    assert any("startsWith('https://')" in r for r in rules("WebhookSubscription", "spec.url"))
    assert any("lowerAscii" in r for r in rules("WebhookSubscription", "spec.headers"))
    assert rules("WebhookEvent", "spec") == ["self == oldSelf"]
    assert rules("WebhookSubscription", "spec.retry")
    assert rules("WebhookSubscription", "spec.rateLimit") == [
        "self.requestsPerSecond > 0.0",
        "!has(self.burst) || self.burst >= 1",
    ]
    assert any("typePrefix" in r for r in rules("WebhookSource", "spec"))
    assert any("matchExpressions" in r for r in rules("WebhookSource", "spec"))
    assert len(ALL_RULES) == 11


@pytest.mark.parametrize(("schema_node", "rule"), ALL_RULES)
def test_every_cel_rule_compiles(schema_node: dict[str, Any], rule: dict[str, Any]) -> None:
    assert cel_compile_errors(rule["rule"], schema_node) == []
    # The API server rejects messages with line breaks; folded YAML must not leave one.
    assert rule["message"].strip()
    assert "\n" not in rule["message"]
    assert "\n" not in rule["rule"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("self.startsWith('http://' ||", "does not parse"),
        ("self.lowerCase() == 'a'", "unknown functions"),
        ("other == self", "unknown variables"),
        ("self.maxDelay >= self.initialDelaySeconds", "no field 'maxDelay'"),
        ("self.all(k, k.size() > 0) && x", "unknown variables"),
    ],
)
def test_the_cel_checker_rejects_broken_rules(rule: str, expected: str) -> None:
    errors = cel_compile_errors(rule, node("WebhookSubscription", "spec.retry"))
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://crm.example.com/hooks/orders", True),
        ("http://localhost:8000/hooks/orders", True),
        ("HTTPS://crm.example.com/", False),  # schemes are matched as written; lower case only
        ("ftp://crm.example.com/hooks", False),
        ("crm.example.com/hooks", False),
        ("javascript:alert(1)", False),
    ],
)
def test_url_scheme_rule(url: str, accepted: bool) -> None:
    (scheme_rule, _host_rule) = node("WebhookSubscription", "spec.url")["x-kubernetes-validations"]
    assert cel_evaluate(scheme_rule["rule"], url) is accepted


@pytest.mark.parametrize(
    ("url", "accepted"),
    [("https://crm.example.com/x", True), ("https://", False), ("http:///path-only", False)],
)
def test_url_host_rule(url: str, accepted: bool) -> None:
    (_scheme_rule, host_rule) = node("WebhookSubscription", "spec.url")["x-kubernetes-validations"]
    assert cel_evaluate(host_rule["rule"], url) is accepted


# ------------------------------------------------------------------------------------------
# Printer columns


def resolve_json_path(root: dict[str, Any], json_path: str) -> dict[str, Any]:
    """The schema node a printer column's JSONPath points at (filters step into list items)."""
    assert json_path.startswith("."), json_path
    current = root
    for part in re.findall(r"\.([A-Za-z_]\w*)|\[\?\(@\.(\w+)==\"(\w+)\"\)\]", json_path):
        field, filter_field, _filter_value = part
        if field:
            current = current["properties"][field] if field != "metadata" else {"properties": {}}
        else:
            assert current["type"] == "array", json_path
            current = current["items"]
            assert filter_field in current["properties"], json_path
    return current


EXPECTED_COLUMNS = {
    "WebhookSubscription": [
        ("URL", ".spec.url", 0),
        ("READY", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("DELIVERED", ".status.deliveredCount", 0),
        ("FAILED", ".status.failedCount", 0),
        ("AGE", ".metadata.creationTimestamp", 0),
        ("REASON", '.status.conditions[?(@.type=="Ready")].reason', 1),
        ("PAUSED", ".spec.paused", 1),
        ("FORMAT", ".spec.format", 1),
        ("ORDERING", ".spec.ordering", 1),
        ("RATE", ".spec.rateLimit.requestsPerSecond", 1),
        ("CONSECUTIVE-FAILURES", ".status.consecutiveFailures", 1),
        ("LAST-SUCCESS", ".status.lastSuccessTime", 1),
        ("FILTER", ".spec.filter", 1),
    ],
    "WebhookEvent": [
        ("TYPE", ".spec.type", 0),
        ("DELIVERED", '.status.conditions[?(@.type=="Delivered")].status', 0),
        ("FAILED", ".status.failed", 0),
        ("PENDING", ".status.pending", 0),
        ("AGE", ".metadata.creationTimestamp", 0),
        ("SUCCEEDED", ".status.succeeded", 1),
        ("REASON", '.status.conditions[?(@.type=="Delivered")].reason', 1),
        ("SOURCE", ".spec.source", 1),
        ("KEY", ".spec.orderingKey", 1),
    ],
    "WebhookSource": [
        ("KIND", ".spec.resource.kind", 0),
        ("READY", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("REASON", '.status.conditions[?(@.type=="Ready")].reason', 0),
        ("EMITTED", ".status.eventsEmitted", 0),
        ("AGE", ".metadata.creationTimestamp", 0),
        ("LAST-EMITTED", ".status.lastEmittedTime", 1),
        ("CAUGHT-UP-TO", ".status.resourceVersion", 1),
    ],
}


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns(kind: str) -> None:
    columns = served_version(CRDS[kind])["additionalPrinterColumns"]
    # kubectl prints column names upper-cased.
    got = [(c["name"].upper(), c["jsonPath"], c.get("priority", 0)) for c in columns]
    assert got == EXPECTED_COLUMNS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns_point_at_fields_of_the_right_type(kind: str) -> None:
    for column in served_version(CRDS[kind])["additionalPrinterColumns"]:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        target = resolve_json_path(schema(kind), column["jsonPath"])
        expected = {"string": "string", "integer": "integer", "boolean": "boolean", "number": "number"}[
            target["type"]
        ]
        if target.get("format") == "date-time":
            expected = "date"
        assert column["type"] == expected, column


def test_the_json_path_resolver_fails_on_a_missing_field() -> None:
    with pytest.raises(KeyError):
        resolve_json_path(schema("WebhookEvent"), ".status.delivered")


# ------------------------------------------------------------------------------------------
# Sample resources through our schemas


def subscription(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WebhookSubscription",
        "metadata": {"name": "orders-to-crm", "namespace": "shop"},
        "spec": {"url": "https://crm.example.com/hooks/orders", **spec},
    }


def event(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "WebhookEvent",
        "metadata": {"name": "order-1001-created", "namespace": "shop"},
        "spec": {"type": "order.created", "data": {"orderId": 1001}, **spec},
    }


FULL_SUBSCRIPTION = subscription(
    eventTypes=["order.*", "invoice.paid"],
    paused=False,
    format="StandardWebhooks",
    signing={"secretRef": {"name": "crm-webhook-secret"}},
    headers={"X-Tenant": "shop", "Authorization": "Bearer abc"},
    timeoutSeconds=10,
    retry={"maxAttempts": 8, "backoff": "Exponential", "initialDelaySeconds": 5, "maxDelaySeconds": 3600},
    maxInFlight=10,
    tls={
        "caBundleSecretRef": {"name": "crm-ca", "key": "ca.crt"},
        "clientCertSecretRef": {"name": "crm-mtls"},
    },
)


def test_the_api_md_subscription_is_valid() -> None:
    assert validate_custom_resource(FULL_SUBSCRIPTION) == []


def test_delivery_options_are_valid() -> None:
    ordered = subscription(ordering="PerKey", rateLimit={"requestsPerSecond": 0.5, "burst": 3})
    assert validate_custom_resource(ordered) == []
    assert validate_custom_resource(subscription(rateLimit={"requestsPerSecond": 5})) == []
    assert validate_custom_resource(event(orderingKey="order-1001")) == []


def test_a_minimal_subscription_is_valid() -> None:
    assert validate_custom_resource(subscription()) == []


def test_a_subscription_with_status_written_by_the_operator_is_valid() -> None:
    obj = copy.deepcopy(FULL_SUBSCRIPTION)
    obj["status"] = {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "EndpointDisabled",
                "message": "disabled after 410 Gone",
                "lastTransitionTime": "2025-01-15T10:30:00Z",
                "observedGeneration": 3,
            }
        ],
        "deliveredCount": 120,
        "failedCount": 4,
        "consecutiveFailures": 0,
        "lastDeliveryTime": "2025-01-15T10:30:00Z",
        "lastSuccessTime": "2025-01-15T10:29:00Z",
        "endpointDisabled": {
            "reason": "Gone",
            "message": "410",
            "since": "2025-01-15T10:30:00Z",
            "generation": 3,
        },
        "reenabled": "1",
    }
    assert validate_custom_resource(obj) == []


def test_an_event_with_status_written_by_the_operator_is_valid() -> None:
    obj = event(source="/shop/orders", subscriptions=["orders-to-crm"], ttlSecondsAfterFinished=3600)
    obj["status"] = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Delivered",
                "status": "False",
                "reason": "InProgress",
                "message": "0 of 1 delivered",
                "lastTransitionTime": "2025-01-15T10:30:00Z",
            },
            {
                "type": "Failed",
                "status": "False",
                "reason": "NoFailures",
                "message": "",
                "lastTransitionTime": "2025-01-15T10:30:00Z",
            },
        ],
        "deliveries": [
            {
                "subscription": "orders-to-crm",
                "state": "Retrying",
                "attempts": 3,
                "lastStatusCode": 503,
                "lastError": "HTTP 503 Service Unavailable",
                "reason": "",
                "lastAttemptTime": "2025-01-15T10:30:00Z",
                "nextAttemptTime": "2025-01-15T10:30:20Z",
            }
        ],
        "succeeded": 0,
        "failed": 0,
        "pending": 1,
        "redelivered": "2025-01-15",
    }
    assert validate_custom_resource(obj) == []


def test_event_data_may_be_any_json_object() -> None:
    data = {"nested": {"list": [1, "two", {"three": None}], "flag": True}, "n": 1.5}
    assert validate_custom_resource(event(data=data)) == []
    assert validate_custom_resource(event(data={})) == []


BAD_SUBSCRIPTIONS = [
    pytest.param({"url": "ftp://crm.example.com/hooks"}, "must start with http:// or https://", id="ftp-url"),
    pytest.param({"url": "crm.example.com/hooks"}, "must start with http:// or https://", id="no-scheme"),
    pytest.param({"url": "https://"}, "absolute URL with a host", id="no-host"),
    pytest.param({"url": "https://e.com/" + "a" * 2048}, "is too long", id="long-url"),
    pytest.param({"headers": {"Webhook-Signature": "v1,forged"}}, "reserved name", id="reserved-signature"),
    pytest.param({"headers": {"HOST": "evil.example.com"}}, "reserved name", id="reserved-host-upper"),
    pytest.param({"headers": {"Content-Type": "text/plain"}}, "reserved name", id="reserved-content-type"),
    pytest.param({"headers": {"user-agent": "x"}}, "reserved name", id="reserved-user-agent"),
    pytest.param({"headers": {"CE-Type": "x"}}, "reserved name", id="reserved-ce-prefix"),
    pytest.param({"headers": {"X Tenant": "shop"}}, "HTTP tokens", id="header-name-space"),
    pytest.param({"headers": {"X-" + "a" * 63: "v"}}, "at most 64", id="header-name-long"),
    pytest.param({"headers": {f"X-H{i}": "v" for i in range(33)}}, "too many properties", id="33-headers"),
    pytest.param({"headers": {"X-Tenant": "a" * 1025}}, "is too long", id="header-value-long"),
    pytest.param({"headers": {"X-Tenant": "shop\r\nX-Injected: 1"}}, "does not match", id="header-crlf"),
    pytest.param({"format": "JSON"}, "is not one of", id="bad-format"),
    pytest.param({"retry": {"backoff": "Random"}}, "is not one of", id="bad-backoff"),
    pytest.param({"timeoutSeconds": 0}, "less than the minimum", id="timeout-0"),
    pytest.param({"timeoutSeconds": 61}, "greater than the maximum", id="timeout-61"),
    pytest.param({"retry": {"maxAttempts": 51}}, "greater than the maximum", id="attempts-51"),
    pytest.param({"retry": {"maxAttempts": 0}}, "less than the minimum", id="attempts-0"),
    pytest.param({"maxInFlight": 1001}, "greater than the maximum", id="inflight-1001"),
    pytest.param({"eventTypes": [f"t{i}" for i in range(65)]}, "is too long", id="65-event-types"),
    pytest.param({"eventTypes": ["a" * 257]}, "is too long", id="long-event-type"),
    pytest.param({"eventTypes": [""]}, "should be non-empty", id="empty-event-type"),
    pytest.param(
        {"retry": {"initialDelaySeconds": 600, "maxDelaySeconds": 60}},
        "greater than or equal",
        id="max-lt-initial",
    ),
    pytest.param(
        {"retry": {"initialDelaySeconds": 7200}}, "greater than or equal", id="initial-above-default-max"
    ),
    pytest.param({"signing": {}}, "'secretRef' is a required property", id="signing-without-ref"),
    pytest.param({"paused": "yes"}, "is not of type 'boolean'", id="paused-string"),
    pytest.param({"urll": "https://typo.example.com"}, "Additional properties", id="unknown-field"),
    pytest.param({"ordering": "Sorted"}, "is not one of", id="bad-ordering"),
    pytest.param({"rateLimit": {"requestsPerSecond": 0}}, "must be greater than 0", id="rate-0"),
    pytest.param({"rateLimit": {"requestsPerSecond": -2}}, "must be greater than 0", id="rate-negative"),
    pytest.param({"rateLimit": {"requestsPerSecond": 5, "burst": 0}}, "at least 1", id="burst-0"),
    pytest.param(
        {"rateLimit": {"burst": 5}}, "'requestsPerSecond' is a required property", id="rate-missing"
    ),
]


@pytest.mark.parametrize(("spec", "expected"), BAD_SUBSCRIPTIONS)
def test_bad_subscriptions_are_rejected(spec: dict[str, Any], expected: str) -> None:
    errors = validate_custom_resource(subscription(**spec))
    assert any(expected in e for e in errors), errors


def test_header_names_are_free_when_not_reserved() -> None:
    ok = subscription(
        headers={"X-Webhook-Id-Copy": "1", "Hostname": "a", "Authorization": "Bearer t", "Ce": "x"}
    )
    assert validate_custom_resource(ok) == []


def test_a_subscription_without_url_is_rejected() -> None:
    obj = subscription()
    del obj["spec"]["url"]
    assert any("'url' is a required property" in e for e in validate_custom_resource(obj))


BAD_EVENTS = [
    pytest.param({"type": "a" * 257}, "is too long", id="long-type"),
    pytest.param({"type": ""}, "should be non-empty", id="empty-type"),
    pytest.param({"data": [1, 2]}, "is not of type 'object'", id="data-list"),
    pytest.param({"data": "text"}, "is not of type 'object'", id="data-string"),
    pytest.param({"subscriptions": [f"s{i}" for i in range(101)]}, "is too long", id="101-subscriptions"),
    pytest.param({"ttlSecondsAfterFinished": -1}, "less than the minimum", id="negative-ttl"),
    pytest.param({"source": ""}, "should be non-empty", id="empty-source"),
    pytest.param({"orderingKey": ""}, "should be non-empty", id="empty-ordering-key"),
    pytest.param({"orderingKey": "k" * 257}, "is too long", id="long-ordering-key"),
]


@pytest.mark.parametrize(("spec", "expected"), BAD_EVENTS)
def test_bad_events_are_rejected(spec: dict[str, Any], expected: str) -> None:
    errors = validate_custom_resource(event(**spec))
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("missing", ["type", "data"])
def test_event_type_and_data_are_required(missing: str) -> None:
    obj = event()
    del obj["spec"][missing]
    assert any(f"'{missing}' is a required property" in e for e in validate_custom_resource(obj))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"type": "order.cancelled"}, id="type"),
        pytest.param({"data": {"orderId": 1002}}, id="data"),
        pytest.param({"subscriptions": ["someone-else"]}, id="subscriptions-added"),
        pytest.param({"ttlSecondsAfterFinished": 60}, id="ttl-added"),
    ],
)
def test_event_spec_is_immutable(change: dict[str, Any]) -> None:
    old = event()
    new = event(**change)
    assert validate_custom_resource(new) == []  # a fine object to create
    assert any("immutable" in e for e in validate_custom_resource(new, old=old))


def test_an_event_update_that_leaves_the_spec_alone_is_accepted() -> None:
    old = event(source="/shop/orders")
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {"webhooks.openplatform.dev/redeliver": "1"}
    new["status"] = {"succeeded": 1, "failed": 0, "pending": 0}
    assert validate_custom_resource(new, old=old) == []


def test_a_subscription_spec_may_change() -> None:
    old = subscription()
    new = subscription(url="https://crm.example.com/v2/hooks", paused=True)
    assert validate_custom_resource(new, old=old) == []

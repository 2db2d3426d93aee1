"""Spec parsing: defaults, one clear problem per invalid field, and no crash on any input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook_operator.domain.backoff import RetryPolicy
from webhook_operator.domain.specs import (
    MAX_HEADER_VALUE,
    MAX_HEADERS,
    MAX_URL_LENGTH,
    EventSpec,
    SecretKeyRef,
    SpecProblem,
    SubscriptionSpec,
    parse_event_spec,
    parse_subscription_spec,
)

URL = "https://crm.example.com/hooks/orders"


def subscription(**fields: Any) -> SubscriptionSpec | SpecProblem:
    return parse_subscription_spec({"url": URL, **fields})


def problem(parsed: object) -> SpecProblem:
    assert isinstance(parsed, SpecProblem), f"expected a problem, got {parsed!r}"
    return parsed


# --- WebhookSubscription: defaults --------------------------------------------------------------


def test_a_subscription_with_only_a_url_gets_the_documented_defaults() -> None:
    assert parse_subscription_spec({"url": URL}) == SubscriptionSpec(
        url=URL,
        event_types=(),
        paused=False,
        format="StandardWebhooks",
        signing_secret=None,
        headers=(),
        timeout=10.0,
        retry=RetryPolicy(
            max_attempts=10,
            max_delay=86400,
            schedule=(5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400),
        ),
        max_in_flight=10,
        ca_bundle=None,
        client_cert_secret=None,
        filter=None,
    )


def test_an_explicit_retry_keeps_the_exponential_defaults_of_its_fields() -> None:
    for retry in ({}, {"maxAttempts": 8}, {"backoff": "Exponential", "initialDelaySeconds": 5}):
        parsed = subscription(retry=retry)
        assert isinstance(parsed, SubscriptionSpec)
        assert parsed.retry == RetryPolicy(
            max_attempts=8, backoff="Exponential", initial_delay=5.0, max_delay=3600.0
        )
    parsed = subscription(
        retry={"maxAttempts": 3, "backoff": "Linear", "initialDelaySeconds": 1, "maxDelaySeconds": 9}
    )
    assert isinstance(parsed, SubscriptionSpec)
    assert parsed.retry == RetryPolicy(max_attempts=3, backoff="Linear", initial_delay=1.0, max_delay=9.0)


def test_every_field_of_a_full_subscription_is_read() -> None:
    parsed = subscription(
        eventTypes=["order.*", "invoice.paid"],
        paused=True,
        format="CloudEvents",
        signing={"secretRef": {"name": "crm-secret"}},
        headers={"X-Tenant": "shop", "Authorization": "Bearer t"},
        timeoutSeconds=3,
        retry={"maxAttempts": 2, "backoff": "Linear", "initialDelaySeconds": 1, "maxDelaySeconds": 9},
        maxInFlight=4,
        tls={"caBundleSecretRef": {"name": "ca"}, "clientCertSecretRef": {"name": "mtls"}},
    )
    assert parsed == SubscriptionSpec(
        url=URL,
        event_types=("order.*", "invoice.paid"),
        paused=True,
        format="CloudEvents",
        signing_secret="crm-secret",
        headers=(("Authorization", "Bearer t"), ("X-Tenant", "shop")),
        timeout=3.0,
        retry=RetryPolicy(max_attempts=2, backoff="Linear", initial_delay=1.0, max_delay=9.0),
        max_in_flight=4,
        ca_bundle=SecretKeyRef("ca", "ca.crt"),
        client_cert_secret="mtls",
    )
    assert isinstance(parsed, SubscriptionSpec)
    assert parsed.secret_names == {"crm-secret", "ca", "mtls"}


def test_empty_optional_sections_mean_their_defaults() -> None:
    assert subscription(eventTypes=[], headers={}, signing=None, retry=None, tls=None) == subscription()


# --- WebhookSubscription: each invalid field is named -------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"url": None}, "spec.url"),
        ({"url": ""}, "spec.url"),
        ({"url": 42}, "spec.url"),
        ({"url": "ftp://example.com/"}, "spec.url"),
        ({"url": "https:///no-host"}, "spec.url"),
        ({"url": "https://user:pw@example.com/"}, "spec.url"),
        ({"url": "https://example.com:0/"}, "spec.url"),
        ({"url": "https://example.com:99999/"}, "spec.url"),
        ({"url": "https://example.com/a b"}, "spec.url"),
        ({"url": "https://example.com/" + "a" * MAX_URL_LENGTH}, "spec.url"),
        ({"eventTypes": "order.*"}, "spec.eventTypes"),
        ({"eventTypes": [""]}, "spec.eventTypes"),
        ({"eventTypes": [7]}, "spec.eventTypes"),
        ({"eventTypes": ["order.[a]"]}, "spec.eventTypes: event type pattern 'order.[a]'"),
        ({"eventTypes": ["t"] * 65}, "spec.eventTypes"),
        ({"paused": "yes"}, "spec.paused"),
        ({"format": "Json"}, "spec.format"),
        ({"signing": "k"}, "spec.signing"),
        ({"signing": {"secretRef": {}}}, "spec.signing.secretRef.name"),
        ({"signing": {"secretRef": "k"}}, "spec.signing.secretRef"),
        ({"headers": ["X-A: b"]}, "spec.headers"),
        ({"headers": {"Bad Name": "v"}}, "spec.headers"),
        ({"headers": {"X-A": 5}}, "spec.headers[X-A]"),
        ({"headers": {"X-A": "a\r\nInjected: yes"}}, "spec.headers[X-A]"),
        ({"headers": {"X-A": "v" * (MAX_HEADER_VALUE + 1)}}, "spec.headers[X-A]"),
        ({"headers": {"x" * 65: "v"}}, "spec.headers"),
        ({"headers": {f"X-{i}": "v" for i in range(MAX_HEADERS + 1)}}, "spec.headers"),
        ({"headers": {"webhook-signature": "v1,forged"}}, "spec.headers"),
        ({"headers": {"Host": "internal"}}, "spec.headers"),
        ({"headers": {"ce-type": "x"}}, "spec.headers"),
        ({"timeoutSeconds": 0}, "spec.timeoutSeconds"),
        ({"timeoutSeconds": 61}, "spec.timeoutSeconds"),
        ({"timeoutSeconds": "10"}, "spec.timeoutSeconds"),
        ({"timeoutSeconds": True}, "spec.timeoutSeconds"),
        ({"timeoutSeconds": float("nan")}, "spec.timeoutSeconds"),
        ({"retry": 3}, "spec.retry"),
        ({"retry": {"maxAttempts": 0}}, "spec.retry.maxAttempts"),
        ({"retry": {"maxAttempts": 51}}, "spec.retry.maxAttempts"),
        ({"retry": {"backoff": "Fibonacci"}}, "spec.retry.backoff"),
        ({"retry": {"initialDelaySeconds": -1}}, "spec.retry.initialDelaySeconds"),
        ({"retry": {"maxDelaySeconds": 0}}, "spec.retry.maxDelaySeconds"),
        ({"retry": {"initialDelaySeconds": 60, "maxDelaySeconds": 10}}, "spec.retry.maxDelaySeconds"),
        ({"maxInFlight": 0}, "spec.maxInFlight"),
        ({"maxInFlight": 1001}, "spec.maxInFlight"),
        ({"tls": "yes"}, "spec.tls"),
        ({"tls": {"caBundleSecretRef": {"key": "ca.crt"}}}, "spec.tls.caBundleSecretRef.name"),
        ({"tls": {"caBundleSecretRef": {"name": "ca", "key": ""}}}, "spec.tls.caBundleSecretRef.key"),
        ({"tls": {"clientCertSecretRef": {"name": ""}}}, "spec.tls.clientCertSecretRef.name"),
    ],
)
def test_an_invalid_field_gives_invalid_spec_with_a_message_naming_it(
    fields: dict[str, Any], named: str
) -> None:
    found = problem(parse_subscription_spec({"url": URL, **fields}))
    assert found.reason == "InvalidSpec"
    assert named in found.message


@pytest.mark.parametrize("spec", [None, [], "https://example.com", 3])
def test_a_spec_that_is_not_an_object_is_invalid(spec: object) -> None:
    assert problem(parse_subscription_spec(spec)).message == "spec must be an object"


def test_a_url_with_credentials_is_refused_without_repeating_them() -> None:
    found = problem(subscription(url="https://admin:hunter2-secret@example.com/"))
    assert "hunter2-secret" not in found.message


def test_a_header_with_a_line_break_is_refused_without_repeating_its_value() -> None:
    found = problem(subscription(headers={"Authorization": "Bearer tok-3xq9\r\nX-Evil: 1"}))
    assert "tok-3xq9" not in found.message


@pytest.mark.parametrize("bounds", [{"timeoutSeconds": 1}, {"timeoutSeconds": 60}, {"timeoutSeconds": 2.5}])
def test_timeouts_at_and_within_the_bounds_are_accepted(bounds: dict[str, Any]) -> None:
    parsed = subscription(**bounds)
    assert isinstance(parsed, SubscriptionSpec)
    assert parsed.timeout == float(bounds["timeoutSeconds"])


# --- WebhookEvent --------------------------------------------------------------------------------


def test_an_event_with_type_and_data_gets_no_optional_fields() -> None:
    assert parse_event_spec({"type": "order.created", "data": {"orderId": 1001}}) == EventSpec(
        type="order.created", data={"orderId": 1001}
    )


def test_every_field_of_a_full_event_is_read() -> None:
    parsed = parse_event_spec(
        {
            "type": "order.created",
            "data": {},
            "source": "/shop/orders",
            "subscriptions": ["a", "b"],
            "ttlSecondsAfterFinished": 60,
        }
    )
    assert parsed == EventSpec(
        type="order.created",
        data={},
        source="/shop/orders",
        subscriptions=("a", "b"),
        ttl_seconds_after_finished=60,
    )


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"data": {}}, "spec.type"),
        ({"type": "", "data": {}}, "spec.type"),
        ({"type": "t" * 257, "data": {}}, "spec.type"),
        ({"type": "a"}, "spec.data"),
        ({"type": "a", "data": [1, 2]}, "spec.data"),
        ({"type": "a", "data": "text"}, "spec.data"),
        ({"type": "a", "data": {}, "source": 5}, "spec.source"),
        ({"type": "a", "data": {}, "subscriptions": "a"}, "spec.subscriptions"),
        ({"type": "a", "data": {}, "subscriptions": [""]}, "spec.subscriptions"),
        ({"type": "a", "data": {}, "subscriptions": [f"s{i}" for i in range(101)]}, "spec.subscriptions"),
        ({"type": "a", "data": {}, "ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished"),
        ({"type": "a", "data": {}, "ttlSecondsAfterFinished": "1h"}, "spec.ttlSecondsAfterFinished"),
        ({"type": "a", "data": {"s": json.loads('"\\ud800"')}}, "spec.data"),  # a lone surrogate
        ({"type": json.loads('"a\\udfff"'), "data": {}}, "spec.type"),
        ({"type": "a", "data": {}, "source": json.loads('"\\ud83d"')}, "spec.source"),
    ],
)
def test_an_invalid_event_field_gives_invalid_event_naming_it(spec: dict[str, Any], named: str) -> None:
    found = problem(parse_event_spec(spec))
    assert found.reason == "InvalidEvent"
    assert named in found.message


def test_data_over_the_limit_is_payload_too_large_with_both_sizes() -> None:
    found = problem(parse_event_spec({"type": "a", "data": {"blob": "x" * 2000}}, max_data_bytes=1000))
    assert found.reason == "PayloadTooLarge"
    assert "2011 bytes" in found.message  # {"blob":"xx…"} serialized compactly
    assert "1000 bytes" in found.message


def test_data_exactly_at_the_limit_is_accepted() -> None:
    data = {"blob": "x" * 989}
    assert len(json.dumps(data, separators=(",", ":"))) == 1000
    assert isinstance(parse_event_spec({"type": "a", "data": data}, max_data_bytes=1000), EventSpec)


def test_the_data_limit_counts_utf8_bytes_not_characters() -> None:
    found = problem(parse_event_spec({"type": "a", "data": {"s": "€" * 400}}, max_data_bytes=1000))
    assert found.reason == "PayloadTooLarge"


# --- never a crash, whatever comes in --------------------------------------------------------------

# JSON as a decoder would produce it: lone surrogates included (json.loads('"\\ud800"') makes one).
json_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=20)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), json_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "https://example.com/",
            "http://[::1]:8080/x",
            "https://example.com:99999/",
            "StandardWebhooks",
            "CloudEvents",
            "Linear",
            "Exponential",
            "order.*",
        ]
    ),
)
subscription_fields = st.sampled_from(
    [
        "url",
        "eventTypes",
        "paused",
        "format",
        "signing",
        "headers",
        "timeoutSeconds",
        "retry",
        "maxInFlight",
        "tls",
    ]
)
event_fields = st.sampled_from(["type", "data", "source", "subscriptions", "ttlSecondsAfterFinished"])


def nested(fields: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    inner = st.dictionaries(
        st.sampled_from(
            [
                "name",
                "key",
                "secretRef",
                "maxAttempts",
                "backoff",
                "initialDelaySeconds",
                "maxDelaySeconds",
                "caBundleSecretRef",
                "clientCertSecretRef",
                "X-A",
            ]
        ),
        field_values,
        max_size=4,
    )
    return st.dictionaries(fields, st.one_of(field_values, inner), max_size=8)


# Mostly well-formed specs with one odd value somewhere, which random objects rarely are.
plausible_subscriptions = st.fixed_dictionaries(
    {
        "url": st.sampled_from(["https://example.com/h", "http://10.0.0.1:8080/", "https://[::1]/"])
        | json_text
    },
    optional=dict.fromkeys(["eventTypes", "headers", "timeoutSeconds", "retry", "tls"], field_values),
)
plausible_events = st.fixed_dictionaries(
    {"type": json_text, "data": st.dictionaries(json_text, json_values, max_size=4)},
    optional={
        "source": json_text,
        "subscriptions": st.lists(json_text, max_size=3),
        "ttlSecondsAfterFinished": json_scalars,
    },
)


@settings(max_examples=300)
@given(st.one_of(json_values, nested(subscription_fields)))
def test_parsing_any_subscription_spec_never_raises(spec: object) -> None:
    assert_subscription_parses_or_says_why(spec)


@settings(max_examples=300)
@given(plausible_subscriptions)
def test_parsing_a_nearly_valid_subscription_spec_never_raises(spec: object) -> None:
    assert_subscription_parses_or_says_why(spec)


@settings(max_examples=300)
@given(st.one_of(json_values, nested(event_fields)))
def test_parsing_any_event_spec_never_raises(spec: object) -> None:
    assert_event_parses_or_says_why(spec)


@settings(max_examples=300)
@given(plausible_events)
def test_parsing_a_nearly_valid_event_spec_never_raises(spec: object) -> None:
    assert_event_parses_or_says_why(spec)


def assert_subscription_parses_or_says_why(spec: object) -> None:
    parsed = parse_subscription_spec(spec)
    assert isinstance(parsed, SubscriptionSpec | SpecProblem)
    if isinstance(parsed, SpecProblem):
        assert parsed.reason == "InvalidSpec" and parsed.message.startswith("spec")


def assert_event_parses_or_says_why(spec: object) -> None:
    parsed = parse_event_spec(spec, max_data_bytes=200)
    assert isinstance(parsed, EventSpec | SpecProblem)
    if isinstance(parsed, SpecProblem):
        assert parsed.reason in ("InvalidEvent", "PayloadTooLarge") and parsed.message.startswith("spec")
    else:  # what the wire will encode must be encodable
        json.dumps([parsed.type, parsed.source, parsed.data], ensure_ascii=False).encode()

"""What the publishing client decides before any request: checks, object names, status reading."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_operator.client import EventStatus, InvalidEventError, name_for_key
from webhook_operator.client.checks import MAX_DATA_BYTES, check_event, parse_data, same_event
from webhook_operator.client.status import event_status
from webhook_operator.client.transport import retry_delay, retryable
from webhook_operator.commands.replay import parse_duration
from webhook_operator.domain.specs import EventSpec, parse_event_spec

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@given(st.text(min_size=1, max_size=256).filter(str.isprintable))
def test_every_key_gives_a_valid_object_name_and_always_the_same_one(key: str) -> None:
    name = name_for_key(key)
    assert DNS_LABEL.fullmatch(name), name
    assert len(name) <= 63
    assert name_for_key(key) == name


def test_a_name_keeps_a_readable_prefix_of_the_key_and_the_documented_hash() -> None:
    # The algorithm other languages implement (examples/publishers/node): slug + 16 hex of SHA-256.
    assert name_for_key("Order #1001 created") == "order-1001-created-b6af383a5671bfb1"
    assert name_for_key("✓") == "event-" + hashlib.sha256("✓".encode()).hexdigest()[:16]


def test_keys_that_differ_only_in_what_the_prefix_drops_get_different_names() -> None:
    assert name_for_key("order/1") != name_for_key("order:1")
    assert name_for_key("A") != name_for_key("a")


def test_without_a_key_each_event_gets_a_fresh_name_from_its_type() -> None:
    first = check_event("order.created", {"orderId": 1})
    second = check_event("order.created", {"orderId": 1})
    assert first.name != second.name
    assert first.name.startswith("order-created-")


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"event_type": "order created"}, "not a valid event type"),
        ({"event_type": ""}, "not a valid event type"),
        ({"event_type": "order.*"}, "not a valid event type"),
        ({"event_type": "x" * 257}, "longer than 256"),
        ({"data": [1, 2]}, "must be a JSON object"),
        ({"data": "text"}, "must be a JSON object"),
        ({"data": {"when": dt.datetime.now()}}, "not JSON"),
        ({"data": {"x": float("nan")}}, "not JSON"),
        ({"data": {"blob": "x" * MAX_DATA_BYTES}}, f"the limit is {MAX_DATA_BYTES} bytes"),
        ({"data": {"s": "\ud800"}}, "not valid Unicode"),
        ({"key": ""}, "key must be"),
        ({"key": "a\nb"}, "control characters"),
        ({"key": "k" * 257}, "key must be"),
        ({"subscriptions": ["Orders_CRM"]}, "not a valid Kubernetes object name"),
        ({"subscriptions": "orders"}, "a list of names"),
        ({"subscriptions": ["s"] * 101}, "more than 100"),
        ({"ttl_seconds": -1}, "ttl_seconds"),
        ({"source": ""}, "source"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_problem(kwargs: dict, problem: str) -> None:
    arguments = {"event_type": "order.created", "data": {"orderId": 1}, **kwargs}
    event_type, data = arguments.pop("event_type"), arguments.pop("data")
    with pytest.raises(InvalidEventError, match=re.escape(problem)):
        check_event(event_type, data, **arguments)


def test_an_accepted_event_is_one_the_operator_accepts_too() -> None:
    request = check_event(
        "order.created",
        {"orderId": 1, "lines": [{"sku": "a", "qty": 2}], "note": "ünïcode"},
        key="order-1",
        source="/shop/orders",
        subscriptions=["orders-to-crm"],
        ttl_seconds=3600,
    )
    parsed = parse_event_spec(request.spec)
    assert isinstance(parsed, EventSpec)
    assert parsed.subscriptions == ("orders-to-crm",)
    manifest = request.manifest("shop")
    assert manifest["metadata"] == {
        "name": name_for_key("order-1"),
        "namespace": "shop",
        "annotations": {"webhooks.openplatform.dev/idempotency-key": "order-1"},
    }


def test_data_at_the_limit_is_accepted_and_one_byte_more_is_not() -> None:
    overhead = len(json.dumps({"b": ""}, separators=(",", ":")))
    check_event("a.b", {"b": "x" * (MAX_DATA_BYTES - overhead)})
    with pytest.raises(InvalidEventError):
        check_event("a.b", {"b": "x" * (MAX_DATA_BYTES - overhead + 1)})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[1]", "not an array"),
        ("12", "not a number"),
        ("{", "not valid JSON"),
        ('{"x": NaN}', "not valid JSON"),
    ],
)
def test_data_text_must_be_a_json_object(text: str, problem: str) -> None:
    with pytest.raises(InvalidEventError, match=problem):
        parse_data(text)


def test_the_same_event_is_recognised_as_the_api_server_returns_it() -> None:
    request = check_event("order.created", {"orderId": 1, "total": 2.0}, key="k")
    stored = json.loads(json.dumps(request.manifest("shop")))
    stored["spec"]["data"]["total"] = 2  # the API server returns integral floats as integers
    stored["metadata"].update(uid="u", resourceVersion="5")
    assert same_event(stored, request)
    assert not same_event(stored, check_event("order.created", {"orderId": 2}, key="k"))
    assert not same_event(stored, check_event("order.paid", {"orderId": 1, "total": 2}, key="k"))
    stored["metadata"]["annotations"] = {}
    assert not same_event(stored, request), "an object not published with this key is not ours"


def test_an_event_status_is_read_into_typed_values() -> None:
    status = event_status(
        {
            "metadata": {"name": "e", "namespace": "shop", "uid": "u"},
            "status": {
                "conditions": [
                    {"type": "Delivered", "status": "False", "reason": "DeliveryFailed", "message": "0 of 1"},
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "AttemptsExhausted",
                        "message": "1 failed",
                    },
                ],
                "deliveries": [
                    {"subscription": "crm", "state": "Failed", "attempts": 3, "lastStatusCode": 503},
                ],
                "succeeded": 0,
                "failed": 1,
                "pending": 0,
            },
        }
    )
    assert status.outcome == "Failed"
    assert status.finished
    assert status.reason == "AttemptsExhausted"
    assert status.deliveries[0].last_status_code == 503
    fresh = event_status({"metadata": {"name": "e"}})
    assert isinstance(fresh, EventStatus)
    assert (fresh.outcome, fresh.finished) == ("Pending", False)


def test_transient_answers_are_retried_and_others_are_not() -> None:
    assert all(retryable(code) for code in (0, 429, 500, 502, 503, 504))
    assert not any(retryable(code) for code in (400, 401, 403, 404, 409, 422, 501))
    assert retry_delay(0, "3", remaining=10) == 3.0  # Retry-After honoured
    assert retry_delay(0, None, remaining=0.01) is None  # the budget is spent
    assert all(0.1 <= retry_delay(n, None, remaining=100) <= 5.0 for n in range(20))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("90m", 5400), ("12h", 43200), ("1d12h", 129600), ("7d", 604800)]
)
def test_replay_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "12", "1w", "-1h", "1h 2m", "h"])
def test_bad_replay_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_client_imports_neither_kopf_nor_the_engine() -> None:
    code = (
        "import sys, webhook_operator.client, webhook_operator.commands; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes', 'aiohttp') "
        "or m.startswith('webhook_operator.engine')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"

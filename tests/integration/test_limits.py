"""Limits end in a clear condition naming the limit, never a retry loop or a wedged queue.

The stand-in does no schema validation, so these reach the operator's own checks, as objects
from an old CRD or `kubectl replace --validate=false` would. The response-body cap is checked
on the real Sender against servers that stream a gigabyte or stall right at the cap.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from typing import Any

import pytest

from tests.integration.conftest import (
    condition,
    create_event,
    create_subscription,
    read,
    test_config,
    wait_condition,
)
from tests.integration.test_bad_receivers import (
    GIGABYTE,
    Handler,
    RawServer,
    answers_a_gigabyte,
    raw_server,
    read_request,
)
from webhook_operator.domain.egress import EgressPolicy
from webhook_operator.domain.outcomes import Verdict
from webhook_operator.domain.specs import DEFAULT_MAX_DATA_BYTES
from webhook_operator.domain.wire import OutgoingRequest
from webhook_operator.sender import MAX_RESPONSE_BYTES, Sender
from webhook_operator.testing.operator_thread import OperatorThread

SUBS, EVENTS = "webhooksubscriptions", "webhookevents"


async def assert_event_failed_once_with(standin, name: str, reason: str) -> dict[str, Any]:
    event = await wait_condition(standin, EVENTS, name, "Failed", "True", reason)
    delivered = condition(event, "Delivered")
    assert (delivered["status"], delivered["reason"]) == ("False", reason)
    assert "deliveries" not in event["status"]  # failed before matching: nothing to retry
    assert event["status"]["pending"] == 0 and "completionTime" in event["status"]
    return event


# --- event limits -------------------------------------------------------------------------------------


async def test_event_data_over_the_default_limit_fails_as_payload_too_large(standin, receiver, operator):
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s")})
    await wait_condition(standin, SUBS, "s", "Ready")
    await create_event(standin, "big", {"type": "a", "data": {"blob": "x" * DEFAULT_MAX_DATA_BYTES}})
    event = await assert_event_failed_once_with(standin, "big", "PayloadTooLarge")
    assert condition(event, "Failed")["message"] == (
        f"spec.data is {DEFAULT_MAX_DATA_BYTES + 11} bytes serialized; the limit is {DEFAULT_MAX_DATA_BYTES} bytes"
    )
    assert receiver.requests == []


async def test_the_data_limit_follows_the_operators_setting_and_the_queue_moves_on(standin, receiver):
    operator = OperatorThread(test_config(standin, max_data_bytes=1024))
    await operator.start()
    try:
        await create_subscription(standin, "s", {"url": receiver.endpoint("/s")})
        await wait_condition(standin, SUBS, "s", "Ready")
        await create_event(standin, "big", {"type": "a", "data": {"blob": "x" * 1100}})
        await create_event(standin, "small", {"type": "a", "data": {"blob": "x" * 900}})
        event = await assert_event_failed_once_with(standin, "big", "PayloadTooLarge")
        assert "the limit is 1024 bytes" in condition(event, "Failed")["message"]
        await wait_condition(standin, EVENTS, "small", "Delivered")
        await asyncio.sleep(0.3)
        unchanged = await read(standin, EVENTS, "big")
        assert unchanged is not None
        assert (
            unchanged["metadata"]["resourceVersion"] == event["metadata"]["resourceVersion"]
        )  # no retry loop
    finally:
        await operator.stop()
    assert len(receiver.requests) == 1


async def test_an_event_matching_more_subscriptions_than_allowed_fails_as_too_many(standin, receiver):
    operator = OperatorThread(test_config(standin, max_deliveries_per_event=2))
    await operator.start()
    try:
        for name in ("a", "b", "c"):
            await create_subscription(standin, name, {"url": receiver.endpoint(f"/{name}")})
        for name in ("a", "b", "c"):
            await wait_condition(standin, SUBS, name, "Ready")
        await create_event(standin, "wide", {"type": "order.created", "data": {}})
        event = await assert_event_failed_once_with(standin, "wide", "TooManySubscriptions")
        assert (
            condition(event, "Failed")["message"] == "3 subscriptions in shop match; the limit per event is 2"
        )
        await create_event(
            standin, "narrow", {"type": "order.created", "data": {}, "subscriptions": ["a", "b"]}
        )
        await wait_condition(standin, EVENTS, "narrow", "Delivered")
    finally:
        await operator.stop()
    assert sorted(r.path for r in receiver.requests) == ["/a", "/b"]  # only the narrow event went out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "t" * 257, "data": {}}, "spec.type is longer than 256 characters"),
        (
            {"type": "a", "data": {}, "subscriptions": [f"s{i}" for i in range(101)]},
            "spec.subscriptions names more than 100 subscriptions",
        ),
    ],
)
async def test_an_event_over_a_shape_limit_fails_as_invalid_event(standin, receiver, operator, spec, message):
    await create_event(standin, "e", spec)
    event = await assert_event_failed_once_with(standin, "e", "InvalidEvent")
    assert condition(event, "Failed")["message"] == message


async def test_an_event_whose_data_is_not_valid_unicode_fails_once_and_the_queue_moves_on(
    standin, receiver, operator
):
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s")})
    await wait_condition(standin, SUBS, "s", "Ready")
    lone_surrogate = json.loads('"\\ud800"')  # valid JSON text, not encodable as UTF-8
    await create_event(standin, "odd", {"type": "a", "data": {"s": lone_surrogate}})
    await create_event(standin, "fine", {"type": "a", "data": {"s": "ok"}})
    event = await assert_event_failed_once_with(standin, "odd", "InvalidEvent")
    assert condition(event, "Failed")["message"] == "spec.data holds a string that is not valid Unicode"
    await wait_condition(standin, EVENTS, "fine", "Delivered")
    assert len(receiver.requests) == 1


# --- subscription limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("headers", {f"X-H{i}": "v" for i in range(33)}, "spec.headers has more than 32 entries"),
        ("headers", {"X-Big": "v" * 1025}, "spec.headers[X-Big] is longer than 1024 characters"),
        ("headers", {"X-" + "n" * 63: "v"}, "spec.headers has a header name longer than 64 characters"),
        ("url", "https://example.com/" + "p" * 2029, "spec.url is longer than 2048 characters"),
        ("timeoutSeconds", 0, "spec.timeoutSeconds must be between 1 and 60"),
        ("timeoutSeconds", 61, "spec.timeoutSeconds must be between 1 and 60"),
        ("timeoutSeconds", 0.5, "spec.timeoutSeconds must be between 1 and 60"),
        ("eventTypes", [f"t{i}" for i in range(65)], "spec.eventTypes has more than 64 patterns"),
        ("retry", {"maxAttempts": 51}, "spec.retry.maxAttempts must be between 1 and 50"),
        ("maxInFlight", 1001, "spec.maxInFlight must be between 1 and 1000"),
    ],
)
async def test_a_subscription_over_a_limit_is_not_ready_with_invalid_spec_naming_it(
    standin, receiver, operator, field, value, message
):
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s"), field: value})
    sub = await wait_condition(standin, SUBS, "s", "Ready", "False", "InvalidSpec")
    assert condition(sub, "Ready")["message"].startswith(message)
    await create_event(standin, "e", {"type": "a", "data": {}})
    await wait_condition(standin, EVENTS, "e", "Delivered", "True", "NoSubscriptions")
    assert receiver.requests == []


async def test_limits_at_their_edges_are_accepted(standin, receiver, operator):
    at_the_edges = {
        "url": receiver.endpoint("/") + "p" * (2048 - len(receiver.endpoint("/"))),
        "headers": {f"X-H{i}": "v" * 1024 for i in range(32)},
        "timeoutSeconds": 60,
        "retry": {"maxAttempts": 50},
        "maxInFlight": 1000,
    }
    assert len(at_the_edges["url"]) == 2048
    await create_subscription(standin, "s", at_the_edges)
    await wait_condition(standin, SUBS, "s", "Ready", "True", "Active")
    await create_event(standin, "e", {"type": "a", "data": {}})
    await wait_condition(standin, EVENTS, "e", "Delivered")
    [request] = receiver.requests
    assert request.headers["X-H31"] == "v" * 1024


# --- the response-body read cap, on the real Sender ---------------------------------------------------


def loopback_sender() -> Sender:
    return Sender(EgressPolicy.from_cidrs(["127.0.0.0/8"]))


def request_to(server: RawServer) -> OutgoingRequest:
    return OutgoingRequest(server.url(), (("Content-Type", "application/json"),), b"{}")


def stalls_after(body_bytes: int, *, status: int = 200) -> Handler:
    """Promises a 1 GiB body, sends `body_bytes` of it, then neither sends more nor closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RawServer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, GIGABYTE) + b"x" * body_bytes)
        await writer.drain()
        state.bytes_sent = body_bytes
        await asyncio.sleep(3600)

    return handle


async def test_a_gigabyte_answer_is_cut_after_the_cap_quickly_and_with_flat_memory():
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    sender = loopback_sender()
    try:
        async with raw_server(answers_a_gigabyte) as server:
            started = time.monotonic()
            result = await sender.send(request_to(server), timeout=10)
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.1)  # let the server notice the closed connection
    finally:
        await sender.aclose()
    assert (result.verdict, result.status_code) == (Verdict.SUCCESS, 200)
    assert elapsed < 1.0
    assert server.bytes_sent < 64 * 1024 * 1024  # the rest was never asked for
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024 < 50  # MiB


async def test_a_body_that_stalls_right_after_the_cap_does_not_hold_the_attempt():
    sender = loopback_sender()
    try:
        async with raw_server(stalls_after(MAX_RESPONSE_BYTES, status=503)) as server:
            started = time.monotonic()
            result = await sender.send(request_to(server), timeout=5)
    finally:
        await sender.aclose()
    assert time.monotonic() - started < 1.0  # nothing past the cap was waited for
    assert (result.verdict, result.status_code) == (Verdict.RETRY, 503)


async def test_a_body_that_stalls_just_before_the_cap_is_read_until_the_timeout():
    """The counterpart: the sender does read up to the cap, so a stall below it costs the timeout."""
    sender = loopback_sender()
    try:
        async with raw_server(stalls_after(MAX_RESPONSE_BYTES - 1)) as server:
            result = await sender.send(request_to(server), timeout=1)
    finally:
        await sender.aclose()
    assert (result.verdict, result.error) == (Verdict.RETRY, "timed out after 1s")

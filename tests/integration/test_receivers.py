"""The example receivers (examples/receivers/), run as real processes, against signed requests.

Requests are signed with the official `standardwebhooks` library's Webhook.sign, the sender's
side of the protocol, so these tests are an honest client of the receivers. Each receiver
processes events on one worker in arrival order, so "not processed" is checked with a barrier:
after the request under test, a fresh valid event is sent and waited for; anything the earlier
request had queued would have been processed before it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

try:
    from .receiver_processes import (
        ReceiverProcess,
        running_receiver,
        running_receiver_async,
        unavailable_reason,
    )
except ImportError:  # tests/integration is not a package: pytest puts this folder on sys.path
    from receiver_processes import (
        ReceiverProcess,
        running_receiver,
        running_receiver_async,
        unavailable_reason,
    )


def new_key() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


KEY = new_key()
OLD_KEY = new_key()
OTHER_KEY = new_key()
STANDARD_RECEIVERS = ["flask", "express"]


# ---------------------------------------------------------------------------------------------
# The sender's side: the wire format of API.md, signed with the official library.
# ---------------------------------------------------------------------------------------------
def event_body(event_type: str = "order.created", data: dict[str, Any] | None = None) -> bytes:
    event = {
        "type": event_type,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": data if data is not None else {"orderId": 1001},
    }
    return json.dumps(event).encode()


def signature_headers(
    webhook_id: str, body: bytes, keys: tuple[str, ...] = (KEY,), at: datetime | None = None
) -> dict[str, str]:
    at = at or datetime.now(UTC)
    signatures = [Webhook(key).sign(webhook_id, at, body.decode()) for key in keys]
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def post(receiver: ReceiverProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        receiver.url, content=body, headers={"content-type": "application/json", **headers}, timeout=5
    )


def deliver(receiver: ReceiverProcess, webhook_id: str, body: bytes | None = None) -> httpx.Response:
    body = body if body is not None else event_body()
    return post(receiver, body, signature_headers(webhook_id, body))


def new_id() -> str:
    return str(uuid.uuid4())  # like the operator's webhook-id: the event's metadata.uid


def barrier(receiver: ReceiverProcess) -> None:
    """Send a fresh valid event and wait until it is processed (see the module docstring)."""
    marker = new_id()
    response = deliver(receiver, marker)
    assert response.is_success, response.text
    receiver.wait_processed(lambda entry: entry["id"] == marker)


def times_processed(receiver: ReceiverProcess, webhook_id: str) -> int:
    return receiver.processed_ids().count(webhook_id)


# ---------------------------------------------------------------------------------------------
# Fixtures: one process per receiver for the module; separate ones for the overload tests.
# ---------------------------------------------------------------------------------------------
def require(kind: str) -> None:
    reason = unavailable_reason(kind)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module", params=STANDARD_RECEIVERS)
def example_receiver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReceiverProcess]:
    kind = request.param
    require(kind)
    with running_receiver(kind, secret=KEY, workdir=tmp_path_factory.mktemp(kind)) as started:
        yield started


@pytest.fixture(scope="module", params=STANDARD_RECEIVERS)
def overloaded_receiver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReceiverProcess]:
    """One queue slot and slow processing: a burst of events overflows it."""
    kind = request.param
    require(kind)
    with running_receiver(
        kind,
        secret=KEY,
        workdir=tmp_path_factory.mktemp(f"{kind}-overloaded"),
        queue_size=1,
        process_delay_ms=250,
        retry_after_seconds=1,
    ) as started:
        yield started


@pytest.fixture(scope="module")
def cloudevents_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverProcess]:
    require("flask-cloudevents")
    with running_receiver(
        "flask-cloudevents", secret=KEY, workdir=tmp_path_factory.mktemp("flask-cloudevents")
    ) as started:
        yield started


# ---------------------------------------------------------------------------------------------
# Standard Webhooks, both receivers.
# ---------------------------------------------------------------------------------------------
def test_signed_delivery_is_processed_once(example_receiver: ReceiverProcess) -> None:
    webhook_id = new_id()
    body = event_body("order.created", {"orderId": 1001, "total": "12.50"})

    first = deliver(example_receiver, webhook_id, body)
    assert first.is_success, first.text

    [entry] = example_receiver.wait_processed(lambda e: e["id"] == webhook_id)
    assert entry["type"] == "order.created"
    assert entry["data"] == {"orderId": 1001, "total": "12.50"}
    assert entry["receiver"] == example_receiver.kind


def test_same_webhook_id_again_is_acknowledged_and_not_processed_again(
    example_receiver: ReceiverProcess,
) -> None:
    webhook_id = new_id()
    body = event_body()
    assert deliver(example_receiver, webhook_id, body).is_success
    example_receiver.wait_processed(lambda e: e["id"] == webhook_id)

    # The operator's retry: same webhook-id and body, signed again.
    again = deliver(example_receiver, webhook_id, body)
    assert again.status_code == 200, again.text

    barrier(example_receiver)
    assert times_processed(example_receiver, webhook_id) == 1


def test_tampered_body_is_rejected_and_not_processed(example_receiver: ReceiverProcess) -> None:
    webhook_id = new_id()
    body = event_body("invoice.paid", {"amount": 100})
    headers = signature_headers(webhook_id, body)
    tampered = body.replace(b'"amount": 100', b'"amount": 100000')
    assert tampered != body

    response = post(example_receiver, tampered, headers)

    assert response.status_code == 401, response.text
    barrier(example_receiver)
    assert times_processed(example_receiver, webhook_id) == 0


@pytest.mark.parametrize("skew", [timedelta(minutes=-10), timedelta(minutes=10)], ids=["stale", "future"])
def test_timestamp_outside_tolerance_is_rejected(example_receiver: ReceiverProcess, skew: timedelta) -> None:
    webhook_id = new_id()
    body = event_body()
    # Correctly signed, but for a timestamp 10 minutes away: a replayed (or forged-ahead) request.
    headers = signature_headers(webhook_id, body, at=datetime.now(UTC) + skew)

    response = post(example_receiver, body, headers)

    assert response.status_code == 401, response.text
    barrier(example_receiver)
    assert times_processed(example_receiver, webhook_id) == 0


@pytest.mark.parametrize("case", ["unsigned", "other-key", "malformed-signature", "bad-timestamp"])
def test_unverifiable_requests_are_rejected(example_receiver: ReceiverProcess, case: str) -> None:
    webhook_id = new_id()
    body = event_body()
    headers = {
        "unsigned": {},
        "other-key": signature_headers(webhook_id, body, keys=(OTHER_KEY,)),
        "malformed-signature": {**signature_headers(webhook_id, body), "webhook-signature": "v1"},
        "bad-timestamp": {**signature_headers(webhook_id, body), "webhook-timestamp": "yesterday"},
    }[case]

    response = post(example_receiver, body, headers)

    assert response.status_code == 401, response.text
    barrier(example_receiver)
    assert times_processed(example_receiver, webhook_id) == 0


def test_a_rejected_request_does_not_block_the_genuine_one(example_receiver: ReceiverProcess) -> None:
    """A 401 must not mark the webhook-id as seen: the real event with that id still counts."""
    webhook_id = new_id()
    body = event_body()
    forged = post(example_receiver, body, signature_headers(webhook_id, body, keys=(OTHER_KEY,)))
    assert forged.status_code == 401

    genuine = deliver(example_receiver, webhook_id, body)

    assert genuine.status_code == 202, genuine.text
    example_receiver.wait_processed(lambda e: e["id"] == webhook_id)


@pytest.mark.parametrize("order", ["old-first", "current-first"])
def test_two_signatures_during_key_rotation_are_accepted(
    example_receiver: ReceiverProcess, order: str
) -> None:
    """The operator signs with signingKey and previousSigningKey; the example_receiver knows one of them."""
    webhook_id = new_id()
    body = event_body()
    keys = (OLD_KEY, KEY) if order == "old-first" else (KEY, OLD_KEY)
    headers = signature_headers(webhook_id, body, keys=keys)
    assert len(headers["webhook-signature"].split(" ")) == 2

    response = post(example_receiver, body, headers)

    assert response.is_success, response.text
    example_receiver.wait_processed(lambda e: e["id"] == webhook_id)


def test_non_ascii_body_is_verified_over_its_raw_utf8_bytes(example_receiver: ReceiverProcess) -> None:
    """The operator sends JSON with raw UTF-8 (not \\u escapes): the bytes are what is signed."""
    webhook_id = new_id()
    data = {"city": "Zürich", "note": "naïve café ✓ 🚚"}
    event = {"type": "order.shipped", "timestamp": "2024-05-01T12:00:00Z", "data": data}
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    assert not body.isascii()

    response = post(example_receiver, body, signature_headers(webhook_id, body))

    assert response.status_code == 202, response.text
    [entry] = example_receiver.wait_processed(lambda e: e["id"] == webhook_id)
    assert entry["data"] == data


def test_signed_body_that_is_not_json_is_a_permanent_failure(example_receiver: ReceiverProcess) -> None:
    webhook_id = new_id()
    body = b"not json"

    response = post(example_receiver, body, signature_headers(webhook_id, body))

    assert response.status_code == 400, response.text  # 4xx: the operator does not retry it


def test_overloaded_queue_answers_503_with_retry_after_and_processes_the_retry(
    overloaded_receiver: ReceiverProcess,
) -> None:
    receiver = overloaded_receiver
    ids = [new_id() for _ in range(4)]
    bodies = {webhook_id: event_body(data={"n": n}) for n, webhook_id in enumerate(ids)}

    # A burst: one event in the worker, one in the queue, the rest can't be taken (yet). For all
    # four to be taken, two events would have to finish during the burst: 500 ms.
    statuses = {webhook_id: deliver(receiver, webhook_id, bodies[webhook_id]) for webhook_id in ids}

    accepted = [i for i, r in statuses.items() if r.status_code == 202]
    refused = [i for i, r in statuses.items() if r.status_code == 503]
    codes = {i: r.status_code for i, r in statuses.items()}
    assert accepted, codes
    assert refused, codes
    assert len(accepted) + len(refused) == len(ids)
    for webhook_id in refused:
        retry_after = statuses[webhook_id].headers.get("retry-after")
        assert retry_after is not None
        assert retry_after.isdigit(), retry_after
        assert int(retry_after) >= 1

    # Retry the refused ones with the same webhook-id, as the operator does, honouring
    # Retry-After: each must be processed now (a 503 must not have marked the id as seen).
    deadline = time.monotonic() + 10
    pending = list(refused)
    while pending:
        assert time.monotonic() < deadline, f"still refused: {pending}"
        time.sleep(int(statuses[pending[0]].headers["retry-after"]))
        for webhook_id in list(pending):
            response = deliver(receiver, webhook_id, bodies[webhook_id])
            assert response.status_code in (202, 503), response.text
            if response.status_code == 202:
                pending.remove(webhook_id)
            else:
                statuses[webhook_id] = response

    receiver.wait_processed(lambda e: e["id"] in bodies, count=len(ids))
    processed = receiver.processed_ids()
    for n, webhook_id in enumerate(ids):
        assert processed.count(webhook_id) == 1, (n, processed)
    entries = {e["id"]: e for e in receiver.processed()}
    assert [entries[i]["data"] for i in ids] == [{"n": n} for n in range(len(ids))]


# ---------------------------------------------------------------------------------------------
# CloudEvents (binary content mode) + Standard Webhooks signature, Flask variant.
# ---------------------------------------------------------------------------------------------
def cloudevent_request(
    ce_id: str, data: dict[str, Any], *, webhook_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A binary-mode request as the operator sends it, built with the cloudevents SDK."""
    from cloudevents.core.bindings.http import to_binary_event
    from cloudevents.core.v1.event import CloudEvent

    event = CloudEvent(
        {
            "id": ce_id,
            "type": "order.created",
            "source": "/apis/webhooks.openplatform.dev/v1alpha1/namespaces/shop/webhookevents/order-1",
            "time": datetime.now(UTC),
            "datacontenttype": "application/json",
        },
        data,
    )
    message = to_binary_event(event)
    assert message.headers["ce-specversion"] == "1.0"
    headers = {**message.headers, **signature_headers(webhook_id or ce_id, message.body)}
    return message.body, headers


def test_cloudevents_binary_mode_is_verified_parsed_and_processed_once(
    cloudevents_receiver: ReceiverProcess,
) -> None:
    receiver = cloudevents_receiver
    uid = new_id()
    body, headers = cloudevent_request(uid, {"orderId": 7})

    response = post(receiver, body, headers)

    assert response.status_code == 202, response.text
    [entry] = receiver.wait_processed(lambda e: e["id"] == uid)
    assert entry["type"] == "order.created"
    assert entry["source"].endswith("/webhookevents/order-1")
    assert entry["specversion"] == "1.0"
    assert entry["data"] == {"orderId": 7}

    again = post(receiver, *cloudevent_request(uid, {"orderId": 7}))
    assert again.status_code == 200, again.text
    barrier_id = new_id()
    assert post(receiver, *cloudevent_request(barrier_id, {})).status_code == 202
    receiver.wait_processed(lambda e: e["id"] == barrier_id)
    assert times_processed(receiver, uid) == 1


def test_cloudevents_tampered_data_is_rejected(cloudevents_receiver: ReceiverProcess) -> None:
    uid = new_id()
    body, headers = cloudevent_request(uid, {"amount": 1})

    response = post(cloudevents_receiver, body.replace(b"1", b"9"), headers)

    assert response.status_code == 401, response.text


def test_cloudevents_ce_id_must_match_the_signed_webhook_id(cloudevents_receiver: ReceiverProcess) -> None:
    """ce-* headers are not signed: a ce-id swapped on a validly signed body is refused."""
    body, headers = cloudevent_request(new_id(), {"orderId": 1}, webhook_id=new_id())

    response = post(cloudevents_receiver, body, headers)

    assert response.status_code == 401, response.text


def test_cloudevents_signed_request_that_is_not_a_cloudevent_is_refused(
    cloudevents_receiver: ReceiverProcess,
) -> None:
    webhook_id = new_id()
    body = event_body()  # a Standard Webhooks body: no ce-* headers, not a structured CloudEvent

    response = post(cloudevents_receiver, body, signature_headers(webhook_id, body))

    assert response.status_code == 400, response.text


# ---------------------------------------------------------------------------------------------
# The async helpers, as tests that run the operator in their event loop will use them.
# ---------------------------------------------------------------------------------------------
async def test_async_helpers_start_a_receiver_and_wait_without_blocking_the_loop(tmp_path: Path) -> None:
    require("flask")
    async with running_receiver_async(
        "flask", secret=KEY, workdir=tmp_path, process_delay_ms=100
    ) as receiver:
        webhook_id = new_id()
        body = event_body()
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(
                receiver.url, content=body, headers=signature_headers(webhook_id, body)
            )
        assert response.status_code == 202, response.text

        ticks = 0

        async def tick() -> None:  # runs only if waiting yields to the event loop
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        try:
            [entry] = await receiver.wait_processed_async(lambda e: e["id"] == webhook_id)
        finally:
            ticker.cancel()
        assert entry["id"] == webhook_id
        assert ticks >= 3
    assert receiver.process.poll() is not None  # stopped on exit

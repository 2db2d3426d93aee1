"""Delivery options through the real operator: payload filters, v1a signatures, key length, and
bulk recovery with recover-since. Receivers are real HTTP servers on 127.0.0.1; `standardwebhooks`
judges v1, a verifier written from the spec text (tests/standard_webhooks_v1a.py) judges v1a."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import eventually, free_port, make_signing_key
from tests.integration.conftest import (
    condition,
    create_event,
    create_secret,
    create_subscription,
    delivery,
    patch,
    read,
    test_config,
    wait_condition,
)
from tests.integration.receiver_processes import running_receiver_async, unavailable_reason
from tests.integration.test_kubernetes_events import kubernetes_events
from tests.integration.test_metrics import scrape, sub, value
from tests.standard_webhooks_v1a import verify_v1a
from webhook_operator.testing.operator_thread import OperatorThread

SUBS, EVENTS = "webhooksubscriptions", "webhookevents"
RECOVER_SINCE = "webhooks.openplatform.dev/recover-since"


def whsk() -> str:
    return "whsk_" + base64.b64encode(os.urandom(32)).decode()


# --- payload filter ---------------------------------------------------------------------------


async def test_a_filter_delivers_only_the_events_it_holds_for(standin, receiver, operator):
    await create_subscription(
        standin,
        "big",
        {"url": receiver.endpoint("/big"), "eventTypes": ["order.*"], "filter": "data.amount > 100"},
    )
    await wait_condition(standin, SUBS, "big", "Ready")
    for name, amount in (("small", 50), ("large", 150), ("edge", 100), ("fraction", 100.5)):
        await create_event(standin, name, {"type": "order.created", "data": {"amount": amount}})
    for name in ("small", "large", "edge", "fraction"):
        await wait_condition(standin, EVENTS, name, "Delivered")
    bodies = sorted(request.body for request in receiver.at("/big"))
    assert len(bodies) == 2
    assert b'"amount":150' in bodies[0] + bodies[1] and b'"amount":100.5' in bodies[0] + bodies[1]
    skipped = await read(standin, EVENTS, "small")
    assert skipped is not None and skipped["status"]["deliveries"] == []


async def test_a_filter_that_fails_on_an_event_fails_that_delivery_as_filter_error(
    standin, receiver, operator
):
    await create_subscription(
        standin, "big", {"url": receiver.endpoint("/big"), "filter": "data.amount > 100"}
    )
    await wait_condition(standin, SUBS, "big", "Ready")
    await create_event(standin, "no-amount", {"type": "order.created", "data": {"total": 7}})
    failed = await wait_condition(standin, EVENTS, "no-amount", "Failed")
    entry = delivery(failed, "big")
    assert (entry["state"], entry["reason"], entry["attempts"]) == ("Failed", "FilterError", 0)
    assert "no such key" in entry["lastError"]
    assert receiver.at("/big") == []
    # the subscription itself stays Ready: one odd event says nothing about the expression
    assert condition(await read(standin, SUBS, "big"), "Ready")["status"] == "True"


async def test_a_filter_that_does_not_compile_makes_the_subscription_invalid_spec(
    standin, receiver, operator
):
    await create_subscription(standin, "bad", {"url": receiver.endpoint("/bad"), "filter": "data.amount >"})
    sub = await wait_condition(standin, SUBS, "bad", "Ready", status="False", reason="InvalidSpec")
    message = condition(sub, "Ready")["message"]
    assert "spec.filter does not compile" in message and "Syntax error" in message
    await patch(standin, SUBS, "bad", {"spec": {"filter": "data.amount > 1"}})
    await wait_condition(standin, SUBS, "bad", "Ready")


# --- v1a signatures ---------------------------------------------------------------------------


async def test_a_whsk_key_signs_v1a_verifiable_with_the_public_key_in_status(standin, receiver, operator):
    await create_secret(standin, "ed", {"signingKey": whsk()})
    await create_subscription(
        standin, "s", {"url": receiver.endpoint("/s"), "signing": {"secretRef": {"name": "ed"}}}
    )
    sub = await wait_condition(standin, SUBS, "s", "Ready")
    [public_key] = sub["status"]["signing"]["publicKeys"]
    assert public_key.startswith("whpk_") and len(base64.b64decode(public_key[5:])) == 32
    await create_event(standin, "e1", {"type": "a", "data": {"n": 1}})
    await wait_condition(standin, EVENTS, "e1", "Delivered")
    [request] = receiver.at("/s")
    assert request.headers["webhook-signature"].startswith("v1a,")
    verify_v1a(public_key, request.body, request.headers)


async def test_a_mixed_rotation_sends_both_kinds_and_lists_only_public_keys(standin, receiver, operator):
    old = make_signing_key()
    await create_secret(standin, "k", {"signingKey": whsk(), "previousSigningKey": old})
    await create_subscription(
        standin, "s", {"url": receiver.endpoint("/s"), "signing": {"secretRef": {"name": "k"}}}
    )
    sub = await wait_condition(standin, SUBS, "s", "Ready")
    [public_key] = sub["status"]["signing"]["publicKeys"]
    await create_event(standin, "e1", {"type": "a", "data": {}})
    await wait_condition(standin, EVENTS, "e1", "Delivered")
    [request] = receiver.at("/s")
    kinds = [entry.split(",")[0] for entry in request.headers["webhook-signature"].split(" ")]
    assert kinds == ["v1a", "v1"]
    Webhook(old).verify(request.body, dict(request.headers))  # receivers still on the old key
    verify_v1a(public_key, request.body, request.headers)  # receivers that moved on
    # the rotation ends: only the HMAC key is left, and status lists no public key any more
    await patch(
        standin,
        "secrets",
        "k",
        {"data": {"signingKey": base64.b64encode(old.encode()).decode(), "previousSigningKey": None}},
    )

    async def no_public_keys():
        current = await read(standin, SUBS, "s")
        return current is not None and "signing" not in current["status"]

    await eventually(no_public_keys, what="status.signing removed")


@pytest.mark.parametrize("kind", ["flask", "express"])
async def test_the_receiver_kits_verify_v1a_with_the_published_public_key(standin, operator, tmp_path, kind):
    if reason := unavailable_reason(kind):
        pytest.skip(reason)
    await create_secret(standin, "ed", {"signingKey": whsk()})
    await create_subscription(
        standin,
        "probe",
        {"url": "http://127.0.0.1:9/", "signing": {"secretRef": {"name": "ed"}}, "paused": True},
    )
    await wait_condition(standin, SUBS, "probe", "Ready", status="False", reason="Paused")

    async def keys():
        current = await read(standin, SUBS, "probe")
        return ((current or {}).get("status") or {}).get("signing", {}).get("publicKeys")

    public_keys = await eventually(keys, what="status.signing.publicKeys")
    env = {"WEBHOOK_PUBLIC_KEYS": " ".join(public_keys)}
    async with running_receiver_async(kind, secret="", env=env, workdir=tmp_path) as rx:
        await create_subscription(standin, "sub", {"url": rx.url, "signing": {"secretRef": {"name": "ed"}}})
        await wait_condition(standin, SUBS, "sub", "Ready")
        event = await create_event(standin, "e1", {"type": "order.created", "data": {"orderId": 1}})
        [entry] = await rx.wait_processed_async(lambda e: e["id"] == event["metadata"]["uid"])
        assert entry["data"] == {"orderId": 1}
    # and a receiver pinning another key answers 401: the delivery fails, nothing is processed
    other = "whpk_" + base64.b64encode(os.urandom(32)).decode()
    async with running_receiver_async(
        kind, secret="", env={"WEBHOOK_PUBLIC_KEYS": other}, workdir=tmp_path / "b"
    ) as rx:
        await patch(standin, SUBS, "sub", {"spec": {"url": rx.url, "retry": {"maxAttempts": 1}}})
        await asyncio.sleep(0.5)
        await create_event(standin, "e2", {"type": "order.created", "data": {}})
        failed = await wait_condition(standin, EVENTS, "e2", "Failed")
        assert delivery(failed, "sub")["lastStatusCode"] == 401
        assert rx.processed() == []


# --- key length -------------------------------------------------------------------------------


async def test_a_16_byte_hmac_key_is_invalid_secret_naming_the_rule(standin, receiver, operator):
    short = "whsec_" + base64.b64encode(os.urandom(16)).decode()
    await create_secret(standin, "short", {"signingKey": short})
    await create_subscription(
        standin, "s", {"url": receiver.endpoint("/s"), "signing": {"secretRef": {"name": "short"}}}
    )
    sub = await wait_condition(standin, SUBS, "s", "Ready", status="False", reason="InvalidSecret")
    message = condition(sub, "Ready")["message"]
    assert "decodes to 16 bytes" in message and "at least 24" in message
    assert short.removeprefix("whsec_") not in message


# --- recover-since ----------------------------------------------------------------------------


async def test_recover_since_redelivers_exactly_the_failed_deliveries_since_that_time(
    standin, receiver, operator
):
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s"), "retry": {"maxAttempts": 1}})
    await create_subscription(
        standin, "other", {"url": receiver.endpoint("/other"), "retry": {"maxAttempts": 1}}
    )
    await wait_condition(standin, SUBS, "s", "Ready")
    receiver.script("/s", [500] * 4)
    receiver.script("/other", [500] * 4)
    await create_event(standin, "before", {"type": "a", "data": {"n": 0}})
    await wait_condition(standin, EVENTS, "before", "Failed")
    await asyncio.sleep(1.1)  # creationTimestamp has one-second resolution
    since = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    for n in (1, 2, 3):
        await create_event(standin, f"after-{n}", {"type": "a", "data": {"n": n}})
        await wait_condition(standin, EVENTS, f"after-{n}", "Failed")
    sent_before = len(receiver.at("/s"))
    receiver.unscript("/s")

    await patch(standin, SUBS, "s", {"metadata": {"annotations": {RECOVER_SINCE: since}}})
    for name in ("after-1", "after-2", "after-3"):
        done = await eventually(lambda name=name: _succeeded_to_s(standin, name), what=f"{name} recovered")
        assert delivery(done, "other")["state"] == "Failed"  # only this subscription's deliveries
    sub = await eventually(lambda: _recovery(standin), what="status.recovery")
    assert sub["since"] == since and sub["redelivered"] == 3
    before = await read(standin, EVENTS, "before")
    assert delivery(before, "s")["state"] == "Failed"  # created before `since`: left alone
    assert len(receiver.at("/s")) == sent_before + 3

    # once per value: the same value again does nothing, a bad one says why
    await patch(standin, SUBS, "s", {"metadata": {"labels": {"touched": "yes"}}})
    await asyncio.sleep(0.5)
    assert len(receiver.at("/s")) == sent_before + 3
    await patch(standin, SUBS, "s", {"metadata": {"annotations": {RECOVER_SINCE: "last tuesday"}}})

    async def complaint():
        recovery = await _recovery(standin)
        return recovery if recovery and recovery["since"] == "last tuesday" else None

    recovery = await eventually(complaint, what="the bad value recorded")
    assert "not an RFC 3339 time" in recovery["message"] and recovery["redelivered"] == 0
    events = await eventually(lambda: kubernetes_events(standin, "RecoverSinceInvalid"), what="Event")
    assert "not an RFC 3339 time" in events[0]["message"]


async def _recovery(standin):
    sub = await read(standin, SUBS, "s")
    return ((sub or {}).get("status") or {}).get("recovery")


async def _succeeded_to_s(standin, name):
    event = await read(standin, EVENTS, name)
    return event if event and delivery(event, "s")["state"] == "Succeeded" else None


# --- metrics ----------------------------------------------------------------------------------


@pytest.fixture
async def operator_with_metrics(standin):
    running = OperatorThread(test_config(standin, metrics_port=free_port()))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_filter_verdicts_and_recoveries_are_counted_on_metrics(
    standin, receiver, operator_with_metrics
):
    await create_subscription(
        standin, "big", {"url": receiver.endpoint("/big"), "filter": "data.amount > 100"}
    )
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s"), "retry": {"maxAttempts": 1}})
    await wait_condition(standin, SUBS, "big", "Ready")
    receiver.script("/s", [500])
    for name, data in (("a", {"amount": 1}), ("b", {"amount": 101}), ("c", {})):
        await create_event(standin, name, {"type": "t", "data": data})
        await eventually(lambda name=name: _finished(standin, name), what=f"{name} finished")
    await patch(standin, SUBS, "s", {"metadata": {"annotations": {RECOVER_SINCE: "2000-01-01T00:00:00Z"}}})
    await eventually(lambda: _recovery(standin), what="status.recovery")
    _, samples = await scrape(operator_with_metrics)
    filtered = "webhook_filter_evaluations_total"
    assert value(samples, filtered, **sub("big"), result="skipped") == 1
    assert value(samples, filtered, **sub("big"), result="matched") == 1
    assert value(samples, filtered, **sub("big"), result="error") == 1
    assert value(samples, "webhook_recovered_deliveries_total", **sub("s")) == 1


async def _finished(standin, name):
    event = await read(standin, EVENTS, name)
    return event is not None and "completionTime" in (event.get("status") or {})

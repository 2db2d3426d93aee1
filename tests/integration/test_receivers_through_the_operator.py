"""The example receivers (examples/receivers) behind the real operator: what a consumer gets."""

from __future__ import annotations

import pytest

from tests.conftest import make_signing_key
from tests.integration.conftest import (
    create_event,
    create_secret,
    create_subscription,
    delivery,
    wait_condition,
)
from tests.integration.receiver_processes import running_receiver_async

RECEIVERS = ["flask", "express"]


async def _subscribe(standin, url, key, **extra):
    await create_secret(standin, "s", {"signingKey": key})
    await create_subscription(standin, "sub", {"url": url, "signing": {"secretRef": {"name": "s"}}, **extra})
    await wait_condition(standin, "webhooksubscriptions", "sub", "Ready")


@pytest.mark.parametrize("kind", RECEIVERS)
async def test_a_signed_delivery_is_verified_and_processed_once(standin, operator, tmp_path, kind):
    key = make_signing_key()
    async with running_receiver_async(kind, secret=key, workdir=tmp_path) as rx:
        await _subscribe(standin, rx.url, key)
        event = await create_event(
            standin, "e1", {"type": "order.created", "data": {"orderId": 1, "city": "Zürich"}}
        )
        uid = event["metadata"]["uid"]
        [entry] = await rx.wait_processed_async(lambda e: e["id"] == uid)
        assert entry["data"] == {"orderId": 1, "city": "Zürich"}
        done = await wait_condition(standin, "webhookevents", "e1", "Delivered")
        assert delivery(done, "sub")["attempts"] == 1


@pytest.mark.parametrize("kind", RECEIVERS)
async def test_a_wrong_key_is_rejected_with_401_and_recorded_as_failed_without_retries(
    standin, operator, tmp_path, kind
):
    async with running_receiver_async(kind, secret=make_signing_key(), workdir=tmp_path) as rx:
        await _subscribe(standin, rx.url, make_signing_key())
        await create_event(standin, "e1", {"type": "order.created", "data": {}})
        done = await wait_condition(standin, "webhookevents", "e1", "Failed")
        entry = delivery(done, "sub")
        assert (entry["state"], entry["attempts"], entry["lastStatusCode"]) == ("Failed", 1, 401)
        assert rx.processed() == []


@pytest.mark.parametrize("kind", RECEIVERS)
async def test_an_overloaded_receivers_503_is_retried_and_each_event_processed_exactly_once(
    standin, operator, tmp_path, kind
):
    key = make_signing_key()
    async with running_receiver_async(
        kind, secret=key, workdir=tmp_path, queue_size=1, process_delay_ms=400, retry_after_seconds=1
    ) as rx:
        await _subscribe(standin, rx.url, key, retry={"initialDelaySeconds": 1, "maxAttempts": 5})
        uids = [
            (await create_event(standin, f"e{n}", {"type": "order.created", "data": {"n": n}}))["metadata"][
                "uid"
            ]
            for n in range(4)
        ]
        await rx.wait_processed_async(lambda e: e["id"] in uids, count=4, timeout=20)
        assert sorted(rx.processed_ids()) == sorted(uids)
        retried = 0
        for n in range(4):
            done = await wait_condition(standin, "webhookevents", f"e{n}", "Delivered")
            retried += delivery(done, "sub")["attempts"] > 1
        assert retried >= 1  # the queue of one was overrun, and the 503s were honoured


async def test_the_cloudevents_receiver_verifies_and_parses_a_binary_mode_delivery(
    standin, operator, tmp_path
):
    key = make_signing_key()
    async with running_receiver_async("flask-cloudevents", secret=key, workdir=tmp_path) as rx:
        await _subscribe(standin, rx.url, key, format="CloudEvents")
        event = await create_event(standin, "e1", {"type": "order.created", "data": {"orderId": 1}})
        uid = event["metadata"]["uid"]
        [entry] = await rx.wait_processed_async(lambda e: e["id"] == uid)
        assert entry["type"] == "order.created"
        await wait_condition(standin, "webhookevents", "e1", "Delivered")

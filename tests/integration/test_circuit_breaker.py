"""An endpoint that keeps failing gets one probe at a time; its deliveries wait, unspent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.integration.conftest import (
    create_event,
    create_subscription,
    read,
    test_config,
    wait_condition,
)
from webhook_operator.testing.operator_thread import OperatorThread

EVENTS = 20
RETRY = {"initialDelaySeconds": 1, "maxDelaySeconds": 2, "maxAttempts": 10}


async def _storm(standin, receiver) -> None:
    receiver.script("/down", [503] * 10_000)
    await create_subscription(
        standin, "down", {"url": receiver.endpoint("/down"), "maxInFlight": 1, "retry": RETRY}
    )
    await wait_condition(standin, "webhooksubscriptions", "down", "Ready", "True")
    for i in range(EVENTS):
        await create_event(standin, f"e{i:02d}", {"type": "order.created", "data": {"n": i}})


@pytest.fixture
async def operator_with_circuit(standin) -> AsyncIterator[OperatorThread]:
    running = OperatorThread(test_config(standin, circuit_threshold=3))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_an_endpoint_failing_in_a_row_gets_one_probe_at_a_time(
    standin, receiver, operator_with_circuit
):
    await _storm(standin, receiver)
    await asyncio.sleep(4.0)
    # 3 failures open the circuit; then probes after ~1 s and ~2 s more (and perhaps one that
    # was already waiting for the endpoint's single slot when it opened).
    assert 3 <= len(receiver.at("/down")) <= 10  # without the circuit: over 40 (the last test)
    assert operator_with_circuit.engine is not None
    assert operator_with_circuit.engine.stats()["circuits_open"] == 1


async def test_deliveries_held_by_an_open_circuit_say_so_and_keep_their_attempts(
    standin, receiver, operator_with_circuit
):
    await _storm(standin, receiver)
    await asyncio.sleep(3.0)
    events = [await read(standin, "webhookevents", f"e{i:02d}") for i in range(EVENTS)]
    entries = [event["status"]["deliveries"][0] for event in events if event and event.get("status")]
    held = [entry for entry in entries if entry.get("reason") == "EndpointFailing"]
    assert len(held) >= EVENTS - 10
    assert all(entry["state"] in ("Pending", "Retrying") for entry in held)
    assert sum(entry["attempts"] for entry in entries) == len(receiver.at("/down"))


async def test_when_a_probe_succeeds_every_held_delivery_goes_out_once(
    standin, receiver, operator_with_circuit
):
    await _storm(standin, receiver)
    await asyncio.sleep(2.0)
    receiver.unscript("/down")
    for i in range(EVENTS):
        await wait_condition(standin, "webhookevents", f"e{i:02d}", "Delivered", "True", timeout=15)
    delivered = {r.headers["webhook-id"] for r in receiver.at("/down") if r.at}
    assert len(delivered) == EVENTS
    assert operator_with_circuit.engine is not None
    assert operator_with_circuit.engine.stats()["circuits_open"] == 0


async def test_without_a_circuit_every_due_retry_is_sent(standin, receiver):
    running = OperatorThread(test_config(standin, circuit_threshold=0))
    await running.start()
    try:
        await _storm(standin, receiver)
        await asyncio.sleep(4.0)
        assert len(receiver.at("/down")) > 2 * EVENTS  # the first attempts and their retries
    finally:
        await running.stop()


async def test_a_held_delivery_fails_when_its_retry_policy_would_have_run_out(
    standin, receiver, operator_with_circuit
):
    receiver.script("/down", [503] * 10_000)
    retry = {"initialDelaySeconds": 1, "maxDelaySeconds": 1, "maxAttempts": 3}
    await create_subscription(
        standin,
        "down",
        {"url": receiver.endpoint("/down"), "maxInFlight": 1, "timeoutSeconds": 1, "retry": retry},
    )
    await wait_condition(standin, "webhooksubscriptions", "down", "Ready", "True")
    for i in range(EVENTS):
        await create_event(standin, f"e{i:02d}", {"type": "order.created", "data": {"n": i}})
    entries = []
    for i in range(EVENTS):
        event = await wait_condition(standin, "webhookevents", f"e{i:02d}", "Failed", "True", timeout=15)
        entries.append(event["status"]["deliveries"][0])
    reasons = {entry["reason"] for entry in entries}
    assert "EndpointFailing" in reasons
    assert reasons <= {"EndpointFailing", "AttemptsExhausted"}
    assert all(entry["attempts"] <= 3 for entry in entries)
    assert sum(entry["attempts"] for entry in entries) == len(receiver.at("/down"))

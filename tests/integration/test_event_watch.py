"""The engine's own WebhookEvent watch: resumes, relists, large events, namespaces."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp.web
import kopf
import pytest

from tests.conftest import eventually
from tests.integration.conftest import (
    NAMESPACE,
    RunningOperator,
    create_event,
    create_subscription,
    delete,
    read,
    test_config,
    wait_condition,
)
from webhook_operator.api_standin import serve_api_standin
from webhook_operator.domain.scope import NamespaceScope
from webhook_operator.kube import KubeClient


async def test_events_created_while_watches_keep_being_cut_are_each_delivered_once(
    standin, receiver, operator
):
    await create_subscription(standin, "orders", {"url": receiver.endpoint("/hooks")})
    await wait_condition(standin, "webhooksubscriptions", "orders", "Ready", "True")
    for i in range(20):
        await create_event(standin, f"e{i}", {"type": "order.created", "data": {"n": i}})
        if i % 3 == 0:
            standin.cut_watches()
    for i in range(20):
        await wait_condition(standin, "webhookevents", f"e{i}", "Delivered", "True")
    ids = [request.headers["webhook-id"] for request in receiver.at("/hooks")]
    assert len(ids) == 20
    assert len(set(ids)) == 20


async def test_a_watch_resuming_from_a_version_the_server_dropped_lists_again_and_misses_nothing(receiver):
    # The stand-in keeps only 3 watch events for resuming watches: older versions get 410 Gone.
    async with serve_api_standin(watch_log_size=3) as standin:
        running = RunningOperator(test_config(standin))
        await running.start()
        try:
            await create_subscription(standin, "orders", {"url": receiver.endpoint("/hooks")})
            await wait_condition(standin, "webhooksubscriptions", "orders", "Ready", "True")
            await create_event(standin, "before", {"type": "order.created", "data": {}})
            await wait_condition(standin, "webhookevents", "before", "Delivered", "True")
            lists_before = standin.count("list", resource="webhookevents")

            # The event watch goes away and cannot come back while more than 3 changes happen.
            standin.faults.inject(
                1.0, (503,), methods=("GET",), resources={"webhookevents"}, watches=True, retry_after=None
            )
            standin.cut_watches()
            await delete(standin, "webhookevents", "before")
            for name in ("during-1", "during-2", "during-3"):
                await create_event(standin, name, {"type": "order.created", "data": {}})
            await asyncio.sleep(0.3)
            standin.faults.clear()

            for name in ("during-1", "during-2", "during-3"):
                await wait_condition(standin, "webhookevents", name, "Delivered", "True")
            assert standin.count("list", resource="webhookevents") > lists_before
            engine = running.engine
            assert engine is not None

            # Deleted while unwatched: forgotten on the LIST, as a DELETED event would have done.
            async def forgotten() -> bool:
                return (NAMESPACE, "before") not in engine.events.keys(NAMESPACE)

            await eventually(forgotten)
            assert len(receiver.at("/hooks")) == 4
        finally:
            await running.stop()


async def test_an_event_larger_than_a_stream_reader_line_is_delivered_whole(standin, receiver, operator):
    # aiohttp's readline() stops at 128 KiB; an event may carry 256 KiB of data.
    await create_subscription(standin, "orders", {"url": receiver.endpoint("/hooks")})
    await wait_condition(standin, "webhooksubscriptions", "orders", "Ready", "True")
    payload = {"blob": "x" * 200_000}
    await create_event(standin, "large", {"type": "order.created", "data": payload})
    await wait_condition(standin, "webhookevents", "large", "Delivered", "True")
    [request] = receiver.at("/hooks")
    assert json.loads(request.body)["data"] == payload


async def test_an_operator_for_one_namespace_leaves_events_in_others_alone(standin, receiver):
    running = RunningOperator(test_config(standin, scope=NamespaceScope.parse([NAMESPACE])))
    await running.start()
    try:
        for namespace in (NAMESPACE, "elsewhere"):
            await create_subscription(
                standin, "orders", {"url": receiver.endpoint(f"/{namespace}")}, namespace=namespace
            )
            await create_event(standin, "e1", {"type": "order.created", "data": {}}, namespace=namespace)
        await wait_condition(standin, "webhookevents", "e1", "Delivered", "True")
        await asyncio.sleep(0.3)
        other = await read(standin, "webhookevents", "e1", namespace="elsewhere")
        assert other is not None
        assert "status" not in other or not other["status"]
        assert receiver.at("/elsewhere") == []
    finally:
        await running.stop()


# -- the stream decoder itself ------------------------------------------------------------------


@pytest.fixture
async def chunked_watch_server() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """A server whose watch stream splits its lines at awkward places: one byte, mid-line, many."""
    events = [
        {
            "type": "ADDED",
            "object": {"metadata": {"name": f"e{i}", "resourceVersion": str(i)}, "pad": "y" * i * 97},
        }
        for i in range(1, 40)
    ]
    stream = b"".join(json.dumps(event).encode() + b"\n" for event in events)

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        position, sizes = 0, [1, 7, 300, 2, 4096, 13]
        while position < len(stream):
            size = sizes[position % len(sizes)]
            await response.write(stream[position : position + size])
            position += size
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    app = aiohttp.web.Application()
    app.router.add_get("/watch", handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", events
    finally:
        await runner.cleanup()


async def test_the_watch_stream_decodes_events_split_across_any_chunk_boundaries(chunked_watch_server):
    url, events = chunked_watch_server
    client = KubeClient()
    await client.use(kopf.ConnectionInfo(server=url, insecure=True))
    try:
        received = [event async for event in client.watch("/watch", read_timeout=5)]
    finally:
        await client.aclose()
    assert received == events


async def test_after_a_restart_a_retrying_event_waits_for_its_subscription_to_be_indexed(
    standin, receiver, operator
):
    await create_subscription(
        standin, "orders", {"url": receiver.endpoint("/hooks"), "retry": {"initialDelaySeconds": 2}}
    )
    await wait_condition(standin, "webhooksubscriptions", "orders", "Ready", "True")
    receiver.script("/hooks", [503])
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "e1", "Delivered", "False", "InProgress")
    await operator.stop()

    # The operator comes back able to list events but not, for a while, subscriptions.
    standin.faults.inject(
        1.0, (503,), methods=("GET",), resources={"webhooksubscriptions"}, watches=True, retry_after=None
    )
    await operator.start()
    await asyncio.sleep(1.5)
    standin.faults.clear()
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered", "True", timeout=20)
    assert event["status"]["deliveries"][0]["state"] == "Succeeded"
    assert len(receiver.at("/hooks")) == 2

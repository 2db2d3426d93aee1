"""Publishing through an API server that sheds load (429), breaks (500, 503) and loses the answer
of creates it applied: every event is created exactly once, with or without an idempotency key."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.faults.harness import NAMESPACE, Cluster, FaultyStandin, serve_standin
from webhook_operator.client import ApiError, AsyncPublisher, Publisher, name_for_key

pytestmark = pytest.mark.faults


class LosingCreates(FaultyStandin):
    """Applies every create of a WebhookEvent, then drops the connection instead of answering
    every `lose_every`-th one: the client cannot know its create took effect."""

    lose_every = 0
    lost_creates = 0
    _creates = 0

    async def _answer(self, raw: Any, target: Any) -> Any:
        response = await super()._answer(raw, target)
        if raw.method == "POST" and target.plural == "webhookevents" and response.status == 201:
            self._creates += 1
            if self.lose_every and self._creates % self.lose_every == 0 and raw.transport is not None:
                self.lost_creates += 1
                raw.transport.abort()
        return response


@pytest.fixture
async def standin() -> AsyncIterator[LosingCreates]:
    async with serve_standin(LosingCreates) as served:
        assert isinstance(served, LosingCreates)
        yield served


def kubeconfig_for(server: str, path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "standin", "cluster": {"server": server}}],
                "users": [{"name": "anyone", "user": {}}],
                "contexts": [
                    {
                        "name": "standin",
                        "context": {"cluster": "standin", "user": "anyone", "namespace": NAMESPACE},
                    }
                ],
                "current-context": "standin",
            }
        )
    )
    return path


def faulty(standin: LosingCreates) -> None:
    standin.faults.inject(0.3, statuses=(429, 500, 503), retry_after=0, methods=("POST",), seed=3)
    standin.lose_every = 3


async def test_keyed_events_are_created_once_through_errors_and_lost_answers(
    standin: LosingCreates, cluster: Cluster, tmp_path: Path
) -> None:
    faulty(standin)
    kubeconfig = kubeconfig_for(str(standin.url), tmp_path / "kubeconfig")
    async with AsyncPublisher(kubeconfig=kubeconfig, retry_seconds=60) as publisher:
        keys = [f"order-{n}-created" for n in range(12)]
        published = await asyncio.gather(
            *(publisher.publish("order.created", {"orderId": n}, key=key) for n, key in enumerate(keys))
        )
        # Publishing again (a job retried after it crashed) changes nothing either.
        again = await asyncio.gather(
            *(publisher.publish("order.created", {"orderId": n}, key=key) for n, key in enumerate(keys))
        )

    assert standin.faults.injected.total() > 5
    assert standin.lost_creates >= 4
    standin.faults.clear()
    stored = {obj["metadata"]["name"]: obj for obj in await cluster.events()}
    assert sorted(stored) == sorted(name_for_key(key) for key in keys)
    for event, repeat in zip(published, again, strict=True):
        assert event.namespace == NAMESPACE
        assert event.uid == stored[event.name]["metadata"]["uid"] == repeat.uid
        assert not repeat.created
    # A create whose answer was lost is found on the retry: reported as not created by this call.
    assert sum(not event.created for event in published) >= standin.lost_creates


async def test_events_without_a_key_are_created_once_each_too(
    standin: LosingCreates, cluster: Cluster, tmp_path: Path
) -> None:
    faulty(standin)
    kubeconfig = kubeconfig_for(str(standin.url), tmp_path / "kubeconfig")

    def publish_all() -> list[str]:
        with Publisher(kubeconfig=kubeconfig, retry_seconds=60) as publisher:
            return [publisher.publish("invoice.paid", {"invoice": n}).name for n in range(12)]

    names = await asyncio.to_thread(publish_all)

    assert standin.lost_creates >= 3
    standin.faults.clear()
    stored = await cluster.events()
    assert len(stored) == 12, "a retried create made a second event"
    assert sorted(obj["metadata"]["name"] for obj in stored) == sorted(names)
    assert sorted(obj["spec"]["data"]["invoice"] for obj in stored) == list(range(12))


def test_an_unreachable_api_server_is_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: connections are refused
    kubeconfig = kubeconfig_for(f"http://127.0.0.1:{port}", tmp_path / "kubeconfig")
    with Publisher(kubeconfig=kubeconfig, retry_seconds=1.5) as publisher:
        started = time.monotonic()
        with pytest.raises(ApiError, match="could not be reached") as raised:
            publisher.publish("order.created", {"orderId": 1}, key="k")
    assert raised.value.status == 0
    assert 0.5 <= time.monotonic() - started < 5

"""The integration tier: the real kopf operator against the API stand-in over real HTTP on
127.0.0.1, delivering to real HTTP receivers."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import kopf
import pytest

from tests.conftest import eventually
from tests.integration.receiver import Receiver, serve_receiver
from webhook_operator.api_standin import ApiStandin, StandinError, serve_api_standin
from webhook_operator.config import OperatorConfig
from webhook_operator.domain.egress import EgressPolicy
from webhook_operator.main import run_operator
from webhook_operator.runtime import Engine

NAMESPACE = "shop"


@pytest.fixture
async def standin() -> AsyncIterator[ApiStandin]:
    async with serve_api_standin() as served:
        yield served


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


def test_config(standin: ApiStandin, **overrides: Any) -> OperatorConfig:
    """Settings for tests: loopback allowed (receivers live there), fast health flushes."""
    base = OperatorConfig(
        egress=EgressPolicy.from_cidrs(["127.0.0.0/8"]),
        health_flush_seconds=0.2,
        shutdown_grace_seconds=2.0,
        connection=kopf.ConnectionInfo(server=str(standin.url), insecure=True),
    )
    return dataclasses.replace(base, **overrides)


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


class RunningOperator:
    """The real operator, in a thread with its own event loop, as it runs in production.

    A thread, not a task in the test's loop: kopf treats every task created after it started
    as its own and waits for (then cancels) them at shutdown, the test's task included.
    `kill()` cancels it mid-whatever, with no graceful shutdown.
    """

    def __init__(self, config: OperatorConfig, resolver: Any = None) -> None:
        self.config = config
        self.resolver = resolver
        self.engine: Engine | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    async def start(self) -> None:
        self._stop, ready = threading.Event(), threading.Event()
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name="operator", daemon=True)
        self._thread.start()
        started = await asyncio.to_thread(ready.wait, 20)
        if self.error is not None:
            raise self.error
        assert started, "the operator did not get ready in 20 s"

    def _run(self, ready: threading.Event) -> None:
        stop = self._stop  # this run's flag: a restart makes a new one
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._main = loop.create_task(
                run_operator(
                    self.config,
                    stop_flag=stop,
                    ready_flag=ready,
                    resolver=self.resolver,
                    on_engine=self._adopt,
                )
            )
            loop.run_until_complete(self._main)
        except asyncio.CancelledError:
            pass
        except BaseException as error:  # surfaced to the test by start()/stop()
            self.error = error
            ready.set()
        finally:
            # kopf waits for the threading.Event stop flag in an executor thread (not a daemon):
            # release it however the loop ended, or the interpreter waits for it at exit.
            stop.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _adopt(self, engine: Engine) -> None:
        self.engine = engine

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 20)
        assert not self._thread.is_alive(), "the operator did not stop within 20 s"
        self._thread = None
        if self.error is not None:
            raise self.error

    async def kill(self) -> None:
        if self._thread is None or self._loop is None or self._main is None:
            return
        self._loop.call_soon_threadsafe(self._main.cancel)
        await asyncio.to_thread(self._thread.join, 20)
        self._thread = None

    async def restart(self, **overrides: Any) -> None:
        await self.stop()
        self.config = dataclasses.replace(self.config, **overrides)
        await self.start()


@pytest.fixture
def operator_config(standin: ApiStandin) -> OperatorConfig:
    return test_config(standin)


@pytest.fixture
async def operator(operator_config: OperatorConfig) -> AsyncIterator[RunningOperator]:
    running = RunningOperator(operator_config)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


# -- resource helpers --------------------------------------------------------------------------


async def create_secret(
    standin: ApiStandin,
    name: str,
    data: dict[str, str],
    namespace: str = NAMESPACE,
    secret_type: str = "Opaque",
) -> dict[str, Any]:
    return await standin.create(
        "secrets",
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": secret_type,
            "data": {k: _b64(v) for k, v in data.items()},
        },
    )


async def create_subscription(
    standin: ApiStandin, name: str, spec: dict[str, Any], namespace: str = NAMESPACE
) -> dict[str, Any]:
    return await standin.create(
        "webhooksubscriptions",
        namespace,
        {
            "apiVersion": "webhooks.openplatform.dev/v1alpha1",
            "kind": "WebhookSubscription",
            "metadata": {"name": name},
            "spec": spec,
        },
    )


async def create_event(
    standin: ApiStandin,
    name: str,
    spec: dict[str, Any],
    namespace: str = NAMESPACE,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = annotations
    return await standin.create(
        "webhookevents",
        namespace,
        {
            "apiVersion": "webhooks.openplatform.dev/v1alpha1",
            "kind": "WebhookEvent",
            "metadata": metadata,
            "spec": spec,
        },
    )


async def read(
    standin: ApiStandin, resource: str, name: str, namespace: str = NAMESPACE
) -> dict[str, Any] | None:
    try:
        return await standin.read(resource, namespace, name)
    except StandinError as error:
        if getattr(error, "status", None) == 404:
            return None
        raise


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return None


async def wait_condition(
    standin: ApiStandin,
    resource: str,
    name: str,
    type_: str,
    status: str = "True",
    reason: str | None = None,
    timeout: float = 10.0,
    namespace: str = NAMESPACE,
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        obj = await read(standin, resource, name, namespace)
        found = condition(obj, type_)
        if found and found["status"] == status and (reason is None or found["reason"] == reason):
            return obj
        return None

    return await eventually(probe, timeout=timeout, what=f"{resource}/{name} {type_}={status} {reason or ''}")


def delivery(obj: dict[str, Any], subscription: str) -> dict[str, Any]:
    for item in obj["status"]["deliveries"]:
        if item["subscription"] == subscription:
            return dict(item)
    raise AssertionError(f"no delivery to {subscription} in {obj['status']}")


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


Probe = Callable[[], Any]


async def patch(
    standin: ApiStandin, resource: str, name: str, body: dict[str, Any], namespace: str = NAMESPACE
) -> dict[str, Any]:
    """A merge patch to the main resource, as `kubectl patch --type=merge` or `kubectl annotate` sends."""
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            str(standin.url) + standin.api_path(resource, namespace, name),
            json=body,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response,
    ):
        assert response.status < 300, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def delete(standin: ApiStandin, resource: str, name: str, namespace: str = NAMESPACE) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.delete(str(standin.url) + standin.api_path(resource, namespace, name)) as response,
    ):
        assert response.status < 300, await response.text()

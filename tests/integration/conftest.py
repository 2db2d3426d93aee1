"""The integration tier: the real kopf operator against the API stand-in over real HTTP on
127.0.0.1, delivering to real HTTP receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import eventually
from tests.integration.receiver import Receiver, serve_receiver
from webhook_operator.config import OperatorConfig
from webhook_operator.testing.api_standin import ApiStandin, StandinError, serve_api_standin
from webhook_operator.testing.operator_thread import OperatorThread, standin_config

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
    """Settings for tests: the stand-in's, loopback allowed (receivers live there), fast flushes."""
    return standin_config(standin.url, **overrides)


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def operator_config(standin: ApiStandin) -> OperatorConfig:
    return test_config(standin)


@pytest.fixture
async def operator(operator_config: OperatorConfig) -> AsyncIterator[OperatorThread]:
    running = OperatorThread(operator_config)
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

"""Prometheus metrics as a scraper sees them: the real operator, real deliveries, GET /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import eventually, free_port
from tests.integration.conftest import (
    NAMESPACE,
    create_event,
    create_subscription,
    test_config,
    wait_condition,
)
from webhook_operator.testing.operator_thread import OperatorThread

EVENTS = "webhookevents"
SUBS = "webhooksubscriptions"
FAST_RETRY = {"maxAttempts": 3, "backoff": "Linear", "initialDelaySeconds": 1, "maxDelaySeconds": 1}
# Every label a series may carry: bounded sets, or namespace and subscription names.
ALLOWED_LABELS = {
    "namespace",
    "subscription",
    "outcome",
    "code_class",
    "result",
    "ready",
    "reason",
    "kind",
    "le",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def metrics_operator(standin) -> AsyncIterator[OperatorThread]:
    running = OperatorThread(test_config(standin, metrics_port=free_port()))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def scrape(operator: OperatorThread) -> tuple[str, Samples]:
    url = f"http://127.0.0.1:{operator.config.metrics_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the series does not exist (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def sub(name: str) -> dict[str, str]:
    return {"namespace": NAMESPACE, "subscription": name}


async def test_counters_and_histograms_after_a_success_a_retry_and_a_permanent_failure(
    standin, receiver, metrics_operator
):
    receiver.script("/flaky", [503, 200])
    receiver.script("/broken", [400])
    for name in ("ok", "flaky", "broken"):
        await create_subscription(
            standin, name, {"url": receiver.endpoint(f"/{name}"), "eventTypes": [name], "retry": FAST_RETRY}
        )
    await create_subscription(
        standin,
        "no-secret",
        {
            "url": receiver.endpoint("/x"),
            "eventTypes": ["none"],
            "signing": {"secretRef": {"name": "missing"}},
        },
    )
    # The cloud metadata address: refused by the egress policy whatever the allow-list says here.
    await create_subscription(
        standin, "metadata", {"url": "http://169.254.169.254/latest", "eventTypes": ["meta"]}
    )
    for name in ("ok", "flaky", "broken"):
        await wait_condition(standin, SUBS, name, "Ready")
    await wait_condition(standin, SUBS, "no-secret", "Ready", "False", "SecretNotFound")
    await wait_condition(standin, SUBS, "metadata", "Ready", "False", "EgressDenied")

    await create_event(standin, "order-ok", {"type": "ok", "data": {}})
    await create_event(standin, "order-flaky", {"type": "flaky", "data": {}})
    await create_event(standin, "order-broken", {"type": "broken", "data": {}})
    await create_event(standin, "order-meta", {"type": "meta", "data": {}})

    async def retrying() -> Samples | None:
        _, samples = await scrape(metrics_operator)
        return samples if value(samples, "webhook_retries_scheduled_total", **sub("flaky")) == 1 else None

    during = await eventually(retrying, timeout=5, what="a retry to be scheduled")
    assert value(during, "webhook_deliveries_pending", **sub("flaky")) == 1, "the flaky delivery waits"

    await wait_condition(standin, EVENTS, "order-ok", "Delivered")
    await wait_condition(standin, EVENTS, "order-flaky", "Delivered", timeout=10)
    await wait_condition(standin, EVENTS, "order-broken", "Failed")
    await wait_condition(standin, EVENTS, "order-meta", "Failed", reason="EgressDenied")
    text, samples = await scrape(metrics_operator)

    attempts = "webhook_attempts_total"
    assert value(samples, attempts, **sub("ok"), outcome="success", code_class="2xx") == 1
    assert value(samples, attempts, **sub("flaky"), outcome="retry", code_class="5xx") == 1
    assert value(samples, attempts, **sub("flaky"), outcome="success", code_class="2xx") == 1
    assert value(samples, attempts, **sub("broken"), outcome="fail", code_class="4xx") == 1
    assert value(samples, attempts, **sub("metadata"), outcome="fail", code_class="error") == 1
    assert sum(v for (name, _), v in samples.items() if name == attempts) == 5
    assert value(samples, "webhook_egress_refusals_total", **sub("metadata")) == 1
    assert value(samples, "webhook_egress_refusals_total", **sub("ok")) == 0

    deliveries = "webhook_deliveries_total"
    assert value(samples, deliveries, **sub("ok"), result="succeeded") == 1
    assert value(samples, deliveries, **sub("flaky"), result="succeeded") == 1
    assert value(samples, deliveries, **sub("broken"), result="failed") == 1
    assert value(samples, deliveries, **sub("broken"), result="succeeded") == 0
    assert value(samples, deliveries, **sub("metadata"), result="failed") == 1

    # End to end: one observation per successful delivery, the retry's backoff included.
    latency = "webhook_delivery_latency_seconds"
    assert value(samples, f"{latency}_count", **sub("ok")) == 1
    assert value(samples, f"{latency}_count", **sub("flaky")) == 1
    assert value(samples, f"{latency}_count", **sub("broken")) == 0
    assert value(samples, f"{latency}_sum", **sub("flaky")) >= 0.9  # a 1 s backoff, -10 % jitter
    assert value(samples, f"{latency}_bucket", **sub("flaky"), le="+Inf") == 1

    duration = "webhook_attempt_duration_seconds"
    assert value(samples, f"{duration}_count", **sub("ok")) == 1
    assert value(samples, f"{duration}_count", **sub("flaky")) == 2
    assert value(samples, f"{duration}_count", **sub("broken")) == 1
    assert value(samples, f"{duration}_sum", **sub("ok")) < 5

    assert value(samples, "webhook_retries_scheduled_total", **sub("flaky")) == 1
    assert value(samples, "webhook_retries_scheduled_total", **sub("broken")) == 0

    # Nothing pending: no series is left behind for a subscription once its deliveries are final.
    assert [labels for (name, labels) in samples if name == "webhook_deliveries_pending"] == []
    assert value(samples, "webhook_attempts_in_flight") == 0
    for name in ("ok", "flaky", "broken"):
        assert value(samples, "webhook_subscriptions", **sub(name), ready="True", reason="Active") == 1
    gauge = "webhook_subscriptions"
    assert value(samples, gauge, **sub("no-secret"), ready="False", reason="SecretNotFound") == 1
    assert value(samples, gauge, **sub("metadata"), ready="False", reason="EgressDenied") == 1
    assert sum(v for (name, _), v in samples.items() if name == gauge) == 5
    assert value(samples, "webhook_operator_api_writes_total", kind="event-status") >= 4

    # Labels stay bounded: no URL, no event name, no label outside the known set.
    for (name, labels), _ in samples.items():
        assert {key for key, _ in labels} <= ALLOWED_LABELS, (name, labels)
        for _, label_value in labels:
            assert "://" not in label_value and "order-" not in label_value, (name, labels)
    assert receiver.url not in text
    assert "169.254" not in text
    assert "order-ok" not in text


async def test_the_subscriptions_gauge_follows_a_subscription_from_reason_to_reason(
    standin, receiver, metrics_operator
):
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s"), "paused": True})
    await wait_condition(standin, SUBS, "s", "Ready", "False", "Paused")

    async def gauge_is(expected: dict[tuple[str, str], float]) -> Samples | None:
        _, samples = await scrape(metrics_operator)
        series = {
            (dict(labels)["ready"], dict(labels)["reason"]): v
            for (name, labels), v in samples.items()
            if name == "webhook_subscriptions" and dict(labels)["subscription"] == "s"
        }
        # One series per subscription: the old reason's series is removed, not left at 0.
        return samples if series == expected else None

    await eventually(lambda: gauge_is({("False", "Paused"): 1}), timeout=5, what="Paused counted")
    await api(standin, "PATCH", standin.api_path(SUBS, NAMESPACE, "s"), {"spec": {"paused": False}})
    await wait_condition(standin, SUBS, "s", "Ready", "True", "Active")
    await eventually(lambda: gauge_is({("True", "Active"): 1}), timeout=5, what="Active counted")
    await api(standin, "DELETE", standin.api_path(SUBS, NAMESPACE, "s"))
    await eventually(lambda: gauge_is({}), timeout=5, what="a deleted subscription counted nowhere")


async def api(standin, method: str, path: str, body: dict | None = None) -> None:
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    async with (
        aiohttp.ClientSession(base_url=str(standin.url)) as session,
        session.request(method, path, json=body, headers=headers) as response,
    ):
        assert response.status < 300, await response.text()

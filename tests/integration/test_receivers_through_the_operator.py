"""The example receivers (examples/receivers) behind the real operator: what a consumer gets."""

from __future__ import annotations

import base64
import contextlib
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import make_signing_key
from tests.integration.conftest import (
    create_event,
    create_secret,
    create_subscription,
    delivery,
    wait_condition,
)
from tests.integration.receiver_processes import REPO_ROOT, running_receiver_async

EXAMPLES = REPO_ROOT / "examples"

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


async def test_the_examples_deliver_to_the_receivers_as_15_receiver_yaml_runs_them(
    standin, operator, tmp_path
):
    """examples/ as on a cluster: each subscription's URL reaches the Flask receiver that
    15-receiver.yaml runs behind that Service port (script, WEBHOOK_PATH, the Secret's key),
    here on 127.0.0.1 instead of the Service's address."""
    docs = [
        doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc
    ]
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    key = base64.b64decode(secret["data"]["signingKey"]).decode()
    script_kinds = {"app.py": "flask", "cloudevents_app.py": "flask-cloudevents"}
    by_port = {p["targetPort"]: p["port"] for p in service["spec"]["ports"]}

    async with contextlib.AsyncExitStack() as stack:
        receivers = {}  # Service port -> (receiver, its path)
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
            path = env["WEBHOOK_PATH"]["value"]
            rx = await stack.enter_async_context(
                running_receiver_async(
                    script_kinds[container["args"][0]],
                    secret=key,
                    workdir=tmp_path / container["name"],
                    env={"WEBHOOK_PATH": path},
                )
            )
            receivers[by_port[container["ports"][0]["name"]]] = (rx, path)

        await create_secret(standin, secret["metadata"]["name"], {"signingKey": key})
        expected = {}
        for sub in (d for d in docs if d["kind"] == "WebhookSubscription"):
            url = urlsplit(sub["spec"]["url"])
            rx, path = receivers[url.port]
            assert url.path == path
            await create_subscription(
                standin, sub["metadata"]["name"], {**sub["spec"], "url": rx.base_url + path}
            )
            expected[sub["metadata"]["name"]] = rx
        for name in expected:
            await wait_condition(standin, "webhooksubscriptions", name, "Ready")
        reached = set()
        for event in (d for d in docs if d["kind"] == "WebhookEvent"):
            created = await create_event(standin, event["metadata"]["name"], event["spec"])
            done = await wait_condition(standin, "webhookevents", event["metadata"]["name"], "Delivered")
            for entry in done["status"].get("deliveries", []):
                rx = expected[entry["subscription"]]
                uid = created["metadata"]["uid"]
                [processed] = await rx.wait_processed_async(lambda e, uid=uid: e["id"] == uid)
                assert processed["data"] == event["spec"]["data"]
                reached.add(entry["subscription"])
        assert reached == set(expected)  # each example subscription got at least one event

"""Logs as an operator's log pipeline gets them: one JSON object per line, one line per attempt,
and never a signing key, even at DEBUG, kopf's own lines included."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import eventually, make_signing_key
from tests.integration.conftest import (
    create_event,
    create_secret,
    create_subscription,
    patch,
    test_config,
    wait_condition,
)
from webhook_operator import logs
from webhook_operator.testing.operator_thread import OperatorThread

EVENTS = "webhookevents"
SUBS = "webhooksubscriptions"
BIN = Path(sys.executable).parent
FAST_RETRY = {"maxAttempts": 3, "backoff": "Linear", "initialDelaySeconds": 1, "maxDelaySeconds": 1}


def secret_forms(key: str) -> list[str]:
    """Every way a key could leak: as written, base64 of it (Secret data), its bare base64 part."""
    bare = key.removeprefix("whsec_")
    raw = base64.b64decode(bare)
    return [
        key,
        base64.b64encode(key.encode()).decode(),
        bare,
        raw.hex(),
        base64.urlsafe_b64encode(raw).decode(),
    ]


def leaks(lines: list[str], keys: list[str]) -> list[str]:
    forms = [form for key in keys for form in secret_forms(key)]
    return [line for line in lines if any(form in line for form in forms)]


# -- `webhook-operator run --log-format json`, as a process ------------------------------------


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "standin", "cluster": {"server": server}}],
                "users": [{"name": "someone", "user": {}}],
                "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "someone"}}],
                "current-context": "standin",
            }
        )
    )
    return path


@contextlib.asynccontextmanager
async def operator_process(kubeconfig_path: Path, *args: str) -> AsyncIterator[list[str]]:
    """`webhook-operator run ...` with this kubeconfig; yields its stderr lines as they come."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path)}
    env.pop("WEBHOOK_OPERATOR_ALLOW_CIDRS", None)
    process = await asyncio.create_subprocess_exec(
        str(BIN / "webhook-operator"),
        "run",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    lines: list[str] = []

    async def collect(stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    readers = [asyncio.create_task(collect(s)) for s in (process.stdout, process.stderr) if s is not None]
    try:
        yield lines
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.gather(*readers)


async def test_json_logs_have_one_line_per_attempt_with_its_fields_and_no_key(standin, receiver, tmp_path):
    key, old_key = make_signing_key(), make_signing_key()
    receiver.script("/flaky", [503, 200])
    receiver.script("/broken", [422])
    config = kubeconfig(tmp_path, str(standin.url))
    # With --namespace, kopf watches a namespace once it sees it exist.
    await standin.create(
        "namespaces", None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    )
    async with operator_process(
        config,
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--allow-cidr",
        "127.0.0.0/8",
        "--namespace",
        "shop",
    ) as lines:
        await create_secret(standin, "signing", {"signingKey": key, "previousSigningKey": old_key})
        await create_secret(standin, "bad", {"signingKey": key[:-8] + "!!!!!!!!"})  # not base64
        for name in ("flaky", "broken"):
            await create_subscription(
                standin,
                name,
                {
                    "url": receiver.endpoint(f"/{name}"),
                    "eventTypes": [name],
                    "signing": {"secretRef": {"name": "signing"}},
                    "retry": FAST_RETRY,
                },
            )
        await create_subscription(
            standin,
            "invalid",
            {
                "url": receiver.endpoint("/x"),
                "eventTypes": ["none"],
                "signing": {"secretRef": {"name": "bad"}},
            },
        )
        await wait_condition(standin, SUBS, "flaky", "Ready", timeout=20)
        await wait_condition(standin, SUBS, "invalid", "Ready", "False", "InvalidSecret")
        await create_event(standin, "order-7", {"type": "flaky", "data": {"orderId": 7}})
        await create_event(standin, "order-8", {"type": "broken", "data": {"orderId": 8}})
        await wait_condition(standin, EVENTS, "order-7", "Delivered", timeout=10)
        await wait_condition(standin, EVENTS, "order-8", "Failed")

        async def three_attempt_lines() -> bool:
            return sum('"delivery attempt"' in line for line in lines) >= 3

        await eventually(three_attempt_lines, timeout=5, what="three attempt lines")

    assert lines, "the operator logged nothing"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in parsed)
    # RFC 3339 in UTC: a pipeline in another time zone reads the same instant.
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", e["time"]) for e in parsed)
    assert any(entry["logger"].startswith("kopf") for entry in parsed), "kopf's own lines are JSON too"
    assert any(entry["level"] == "debug" for entry in parsed)

    attempts = [entry for entry in parsed if entry["message"] == "delivery attempt"]
    by_event: dict[str, list[dict[str, Any]]] = {}
    for entry in attempts:
        by_event.setdefault(entry["event"], []).append(entry)
    assert set(by_event) == {"shop/order-7", "shop/order-8"}
    flaky, broken = by_event["shop/order-7"], by_event["shop/order-8"]
    assert [(e["subscription"], e["attempt"], e["status_code"], e["outcome"]) for e in flaky] == [
        ("flaky", 1, 503, "retry"),
        ("flaky", 2, 200, "success"),
    ]
    assert [(e["subscription"], e["attempt"], e["status_code"], e["outcome"]) for e in broken] == [
        ("broken", 1, 422, "fail")
    ]
    for entry in attempts:
        assert isinstance(entry["duration_ms"], int | float) and 0 <= entry["duration_ms"] < 5000
        assert entry["level"] == ("info" if entry["outcome"] == "success" else "warning")
        assert entry["event_id"]

    assert leaks(lines, [key, old_key]) == []


# -- the operator in this process, every logger at DEBUG -----------------------------------------


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record from every thread, at DEBUG (caplog's handler sits on the root logger)."""
    caplog.set_level(logging.DEBUG)
    for name in ("kopf", "webhook_operator", "aiohttp", "httpx", "httpcore", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


async def test_no_key_reaches_any_log_record_at_debug_in_a_run_with_rotation_and_bad_secrets(
    standin, receiver, debug_logs
):
    key, old_key, newer_key = make_signing_key(), make_signing_key(), make_signing_key()
    running = OperatorThread(test_config(standin))
    await running.start()
    try:
        receiver.script("/orders", [500, 200])
        await create_secret(standin, "signing", {"signingKey": key, "previousSigningKey": old_key})
        await create_secret(standin, "short", {"signingKey": "whsec_" + base64.b64encode(b"tiny").decode()})
        await create_secret(standin, "no-prefix", {"signingKey": key.removeprefix("whsec_")})
        await create_subscription(
            standin,
            "orders",
            {
                "url": receiver.endpoint("/orders"),
                "eventTypes": ["order.*"],
                "signing": {"secretRef": {"name": "signing"}},
                "retry": FAST_RETRY,
                "headers": {"X-Tenant": "shop"},
            },
        )
        for name in ("short", "no-prefix"):
            await create_subscription(
                standin,
                f"sub-{name}",
                {
                    "url": receiver.endpoint("/x"),
                    "eventTypes": ["none"],
                    "signing": {"secretRef": {"name": name}},
                },
            )
        await wait_condition(standin, SUBS, "orders", "Ready")
        for name in ("short", "no-prefix"):
            await wait_condition(standin, SUBS, f"sub-{name}", "Ready", "False", "InvalidSecret")
        await create_event(standin, "order-1", {"type": "order.created", "data": {"orderId": 1}})
        await wait_condition(standin, EVENTS, "order-1", "Delivered", timeout=10)
        # Rotate: the new key in, the old one out; then one more delivery with it.
        await patch(
            standin,
            "secrets",
            "signing",
            {"data": {"signingKey": _b64(newer_key), "previousSigningKey": None}},
        )
        await create_event(standin, "order-2", {"type": "order.created", "data": {"orderId": 2}})
        await wait_condition(standin, EVENTS, "order-2", "Delivered", timeout=10)
    finally:
        await running.stop()

    records = debug_logs.records
    texts = [f"{r.name} {r.getMessage()} {getattr(r, 'fields', '')}" for r in records]
    formatted = [logs.JsonFormatter().format(r) for r in records] + [
        logs.TextFormatter("%(message)s").format(r) for r in records
    ]
    # Capture really ran at DEBUG and saw the attempts (a count would depend on other tests'
    # logger settings in this process).
    assert any(r.levelno == logging.DEBUG for r in records), "no DEBUG record was captured"
    assert any(r.getMessage() == "delivery attempt" for r in records), "the attempts were not captured"
    assert any(r.name.startswith("kopf") and r.levelno == logging.DEBUG for r in records)
    assert sum(r.getMessage() == "delivery attempt" for r in records) == 3
    assert leaks(texts + formatted, [key, old_key, newer_key]) == []


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()

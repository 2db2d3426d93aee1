"""No key material leaves the Secrets: not into status, annotations, Kubernetes Events or logs.

One full run exercises every path that touches a key: signed deliveries, a key rotation (two
signatures), an mTLS client key and a private CA, an InvalidSecret with a value that is not
`whsec_`, another with broken base64, retries and a permanent failure that posts a Kubernetes
Event. Then every version of every object the operator could have written (read back through
a watch from the start of history), every Kubernetes Event, and every log record at DEBUG from
every logger in the process (the operator runs in a thread here) is searched for each key in
each form it could be copied in: the `whsec_` string, its base64 body, the Secret's own base64
of it, the raw bytes in hex.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from tests.conftest import make_signing_key
from tests.integration.conftest import (
    NAMESPACE,
    create_event,
    create_secret,
    create_subscription,
    delivery,
    test_config,
    wait_condition,
)
from tests.integration.receiver import Receiver
from tests.integration.tls_receiver import serve_tls_receiver
from webhook_operator.domain.egress import EgressPolicy
from webhook_operator.logs import JsonFormatter, TextFormatter
from webhook_operator.testing.api_standin import ApiStandin
from webhook_operator.testing.operator_thread import OperatorThread

SUBS, EVENTS = "webhooksubscriptions", "webhookevents"
# The test's own servers log requests; they are not the operator.
NOT_THE_OPERATOR = (
    "webhook_operator.testing.api_standin",
    "kmock",
    "aiohttp.access",
    "aiohttp.server",
    "aiohttp.web",
)


class LogCapture(logging.Handler):
    """Every record, formatted every way the operator can format it, exceptions included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.records = 0
        self._formatters = [JsonFormatter(), TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")]

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(NOT_THE_OPERATOR):
            return
        self.records += 1
        parts = [record.getMessage(), repr(record.args), repr(getattr(record, "fields", None))]
        parts += [formatter.format(record) for formatter in self._formatters]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(record.exc_info[1])))
        self.lines.append("\n".join(parts))


@pytest.fixture
def debug_logs() -> Iterator[LogCapture]:
    """A handler on the root logger, with everything turned up to DEBUG for the test."""
    capture = LogCapture()
    root = logging.getLogger()
    touched = {
        name: logging.getLogger(name).level
        for name in ("kopf", "kopf.objects", "httpx", "aiohttp", "asyncio", "webhook_operator")
    }
    old_root = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for name in touched:
        logging.getLogger(name).setLevel(logging.NOTSET)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_root)
        for name, level in touched.items():
            logging.getLogger(name).setLevel(level)


@dataclass
class Secrets:
    """Every secret string of the run, in every form a leak could take."""

    needles: dict[str, str] = field(default_factory=dict)  # needle -> what it is

    def key(self, label: str, value: str) -> None:
        body = value.removeprefix("whsec_")
        raw = base64.b64decode(body + "=" * (-len(body) % 4))
        self.needles[value] = f"{label} (whsec_ value)"
        self.needles[body.rstrip("=")] = f"{label} (base64 body)"
        self.needles[base64.b64encode(value.encode()).decode().rstrip("=")] = f"{label} (as Secret data)"
        self.needles[raw.hex()] = f"{label} (raw bytes, hex)"

    def text(self, label: str, value: str) -> None:
        self.needles[value] = label
        self.needles[base64.b64encode(value.encode()).decode().rstrip("=")] = f"{label} (as Secret data)"

    def found_in(self, haystack: str) -> list[str]:
        return [f"{what}: {needle[:12]}…" for needle, what in self.needles.items() if needle in haystack]


@dataclass
class Run:
    secrets: Secrets
    authorization: str
    logs: LogCapture
    receiver: Receiver


async def put_secret(standin: ApiStandin, name: str, data: dict[str, str]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            str(standin.url) + standin.api_path("secrets", NAMESPACE, name),
            json={"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def history(standin: ApiStandin, resource: str) -> list[dict[str, Any]]:
    """Every version of every object of `resource` ever written, through a watch from the start."""
    path = standin.api_path(resource)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            str(standin.url) + path, params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "1"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return [json.loads(line)["object"] async for line in response.content if line.strip()]


@pytest.fixture
async def full_run(standin: ApiStandin, receiver: Receiver, debug_logs: LogCapture) -> Run:
    secrets = Secrets()
    old, current, rotated = make_signing_key(), make_signing_key(), make_signing_key()
    for label, key in (("old key", old), ("current key", current), ("rotated key", rotated)):
        secrets.key(label, key)
    not_whsec = "plain-password-" + os.urandom(12).hex()
    broken_base64 = "whsec_" + os.urandom(12).hex() + "!*!"
    authorization = "Bearer tok_" + os.urandom(16).hex()
    api_key = "key_" + os.urandom(16).hex()
    secrets.text("a non-whsec value", not_whsec)
    secrets.text("a whsec value with broken base64", broken_base64)
    secrets.text("the Authorization header", authorization.removeprefix("Bearer "))
    secrets.text("the X-Api-Key header", api_key)
    server_ca, client_ca = trustme.CA(), trustme.CA()
    client = client_ca.issue_cert("webhook-operator.example")
    client_key = client.private_key_pem.bytes().decode()
    for line in client_key.splitlines()[1:-1]:
        secrets.text("the mTLS client key", line)
    not_a_ca = "not a PEM bundle " + os.urandom(12).hex()
    not_a_key = "-----BEGIN PRIVATE KEY-----\n" + os.urandom(24).hex() + "\n-----END PRIVATE KEY-----\n"
    secrets.text("a CA bundle that is not PEM", not_a_ca)
    secrets.text("a client key that is not a key", not_a_key.splitlines()[1])

    config = test_config(standin, egress=EgressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]))
    operator = OperatorThread(config)
    await operator.start()
    try:
        async with serve_tls_receiver(server_ca, client_ca=client_ca) as tls:
            await create_secret(standin, "signing", {"signingKey": current, "previousSigningKey": old})
            await create_secret(standin, "not-whsec", {"signingKey": not_whsec})
            await create_secret(
                standin, "bad-base64", {"signingKey": "whsec_AAAA", "previousSigningKey": broken_base64}
            )
            await create_secret(standin, "ca", {"ca.crt": server_ca.cert_pem.bytes().decode()})
            await create_secret(
                standin,
                "mtls",
                {"tls.crt": client.cert_chain_pems[0].bytes().decode(), "tls.key": client_key},
                secret_type="kubernetes.io/tls",
            )
            await create_secret(standin, "bad-ca", {"ca.crt": not_a_ca})
            await create_secret(
                standin,
                "bad-client-key",
                {"tls.crt": client.cert_chain_pems[0].bytes().decode(), "tls.key": not_a_key},
                secret_type="kubernetes.io/tls",
            )
            signing = {"secretRef": {"name": "signing"}}
            headers = {"Authorization": authorization, "X-Api-Key": api_key, "X-Tenant": "shop"}
            receiver.script("/flaky", [500, 400])
            await create_subscription(
                standin,
                "signed",
                {"url": receiver.endpoint("/signed"), "signing": signing, "headers": headers},
            )
            await create_subscription(
                standin,
                "flaky",
                {
                    "url": receiver.endpoint("/flaky"),
                    "signing": signing,
                    "headers": headers,
                    "retry": {"initialDelaySeconds": 0, "maxAttempts": 3},
                },
            )
            await create_subscription(
                standin,
                "mtls",
                {
                    "url": tls.endpoint("/mtls"),
                    "signing": signing,
                    "tls": {"caBundleSecretRef": {"name": "ca"}, "clientCertSecretRef": {"name": "mtls"}},
                },
            )
            for name in ("not-whsec", "bad-base64"):  # other types: their waiting holds up no event here
                await create_subscription(
                    standin,
                    name,
                    {
                        "url": receiver.endpoint("/x"),
                        "eventTypes": ["other.*"],
                        "signing": {"secretRef": {"name": name}},
                    },
                )
            await create_subscription(
                standin,
                "bad-ca",
                {
                    "url": tls.endpoint("/x"),
                    "eventTypes": ["other.*"],
                    "tls": {"caBundleSecretRef": {"name": "bad-ca"}},
                },
            )
            await create_subscription(
                standin,
                "bad-client-key",
                {
                    "url": tls.endpoint("/x"),
                    "eventTypes": ["other.*"],
                    "tls": {"clientCertSecretRef": {"name": "bad-client-key"}},
                },
            )
            for name in ("bad-ca", "bad-client-key"):
                await wait_condition(standin, SUBS, name, "Ready", "False", "TLSConfigInvalid")
            for name in ("signed", "flaky", "mtls"):
                await wait_condition(standin, SUBS, name, "Ready")
            for name in ("not-whsec", "bad-base64"):
                await wait_condition(standin, SUBS, name, "Ready", "False", "InvalidSecret")

            await create_event(standin, "e1", {"type": "order.created", "data": {"n": 1}})
            event = await wait_condition(standin, EVENTS, "e1", "Failed", "True", "PermanentError")
            assert delivery(event, "signed")["state"] == delivery(event, "mtls")["state"] == "Succeeded"

            await put_secret(standin, "signing", {"signingKey": rotated, "previousSigningKey": current})
            await asyncio.sleep(0.5)  # the watch brings the rotation
            await create_event(standin, "e2", {"type": "order.created", "data": {"n": 2}})
            await wait_condition(standin, EVENTS, "e2", "Delivered")
            await asyncio.sleep(0.5)  # health flushes and Kubernetes Events land
            assert len(tls.at("/mtls")) == 2
    finally:
        await operator.stop()

    first, second = receiver.at("/signed")
    for key in (current, old):
        Webhook(key).verify(first.body, first.headers)
    for key in (rotated, current):
        Webhook(key).verify(second.body, second.headers)
    assert second.headers["Authorization"] == authorization  # the header was really sent
    return Run(secrets, authorization, debug_logs, receiver)


# --- the checks -----------------------------------------------------------------------------------------


async def test_no_key_material_appears_in_any_version_of_any_object_the_operator_writes(standin, full_run):
    objects = [obj for resource in (SUBS, EVENTS) for obj in await history(standin, resource)]
    assert len(objects) > 10
    for obj in objects:
        written = {k: v for k, v in obj.items() if k != "spec"}  # spec is the user's own input
        written["annotations"] = obj["metadata"].get("annotations")
        leaks = full_run.secrets.found_in(json.dumps(written, ensure_ascii=False))
        assert not leaks, f"{obj['kind']}/{obj['metadata']['name']}: {leaks}"
    statuses = {(obj["kind"], obj["metadata"]["name"]) for obj in objects if obj.get("status")}
    assert ("WebhookSubscription", "not-whsec") in statuses and ("WebhookEvent", "e2") in statuses


async def test_no_key_material_appears_in_any_kubernetes_event(standin, full_run):
    events = await history(standin, "events")
    reasons = {event["reason"] for event in events}
    assert {"InvalidSecret", "TLSConfigInvalid", "DeliveryFailed"} <= reasons, (
        reasons
    )  # the paths that quote errors ran
    for event in events:
        leaks = full_run.secrets.found_in(json.dumps(event, ensure_ascii=False))
        assert not leaks, f"Event {event['reason']} on {event['involvedObject']['name']}: {leaks}"


async def test_no_key_material_appears_in_any_log_record_at_debug(full_run):
    assert full_run.logs.records > 50  # DEBUG really was on
    assert any("delivery attempt" in line for line in full_run.logs.lines)
    for line in full_run.logs.lines:
        leaks = full_run.secrets.found_in(line)
        assert not leaks, f"{leaks} in log record:\n{line[:2000]}"


async def test_the_authorization_header_from_the_spec_never_reaches_the_logs(full_run):
    token = full_run.authorization.removeprefix("Bearer ")
    assert not [line for line in full_run.logs.lines if token in line]


# --- least privilege: what the run asked of the API -----------------------------------------------------

# What SECURITY.md says the operator needs, plus what this test itself did (creating the
# objects, rotating a Secret, reading and watching to check). (verb, resource, subresource).
OPERATOR_NEEDS = {
    *(("get", r, "") for r in (SUBS, EVENTS, "secrets")),
    *(
        (v, r, "")
        for v in ("list", "watch")
        for r in (SUBS, EVENTS, "secrets", "customresourcedefinitions", "namespaces", "webhooksources")
    ),
    ("patch", SUBS, "status"),
    ("patch", EVENTS, "status"),
    ("delete", EVENTS, ""),
    ("create", "events", ""),
}
THE_TEST_DID = {("create", r, "") for r in (SUBS, EVENTS, "secrets")} | {
    ("patch", "secrets", ""),
    ("watch", "events", ""),
}


async def test_the_run_used_no_api_verb_beyond_what_security_md_lists(standin, full_run):
    used = {key for key, count in standin.counts.items() if count}
    assert ("patch", EVENTS, "status") in used and ("create", "events", "") in used
    assert used <= OPERATOR_NEEDS | THE_TEST_DID, sorted(used - OPERATOR_NEEDS - THE_TEST_DID)

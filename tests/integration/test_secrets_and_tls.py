"""Secrets take effect without a restart; private CAs and client certificates work over real TLS."""

from __future__ import annotations

import base64
import json

import pytest
import trustme
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import make_signing_key
from tests.integration.conftest import (
    condition,
    create_event,
    create_secret,
    create_subscription,
    delivery,
    test_config,
    wait_condition,
)
from tests.integration.tls_receiver import serve_tls_receiver

SUBS = "webhooksubscriptions"


@pytest.fixture
def operator_config(standin):
    # https://localhost/ resolves to 127.0.0.1 and ::1: allow both loopbacks.
    from webhook_operator.domain.egress import EgressPolicy

    return test_config(standin, egress=EgressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]))


async def _replace_secret(standin, name, data):
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            str(standin.url) + standin.api_path("secrets", "shop", name),
            json={"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def test_a_changed_signing_key_signs_the_next_attempt_without_a_restart(standin, receiver, operator):
    old, new = make_signing_key(), make_signing_key()
    await create_secret(standin, "k", {"signingKey": old})
    await create_subscription(
        standin, "s", {"url": receiver.endpoint("/s"), "signing": {"secretRef": {"name": "k"}}}
    )
    await wait_condition(standin, SUBS, "s", "Ready")
    await create_event(standin, "e1", {"type": "a", "data": {}})
    await wait_condition(standin, "webhookevents", "e1", "Delivered")

    await _replace_secret(standin, "k", {"signingKey": new})
    import asyncio

    await asyncio.sleep(0.5)  # the watch brings the change; no restart
    await create_event(standin, "e2", {"type": "a", "data": {}})
    await wait_condition(standin, "webhookevents", "e2", "Delivered")
    first, second = receiver.at("/s")
    Webhook(old).verify(first.body, first.headers)
    Webhook(new).verify(second.body, second.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(second.body, second.headers)


async def test_during_rotation_both_signatures_are_sent_and_each_key_verifies(standin, receiver, operator):
    current, previous = make_signing_key(), make_signing_key()
    await create_secret(standin, "k", {"signingKey": current, "previousSigningKey": previous})
    await create_subscription(
        standin, "s", {"url": receiver.endpoint("/s"), "signing": {"secretRef": {"name": "k"}}}
    )
    await wait_condition(standin, SUBS, "s", "Ready")
    await create_event(standin, "e1", {"type": "a", "data": {"n": 1}})
    await wait_condition(standin, "webhookevents", "e1", "Delivered")
    [request] = receiver.at("/s")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for key in (current, previous):
        assert Webhook(key).verify(request.body, request.headers)["data"] == {"n": 1}


async def test_a_private_ca_bundle_lets_deliveries_reach_a_tls_receiver(standin, operator):
    ca = trustme.CA()
    async with serve_tls_receiver(ca) as tls:
        await create_secret(standin, "ca", {"ca.crt": ca.cert_pem.bytes().decode()})
        await create_subscription(
            standin,
            "s",
            {"url": tls.endpoint("/s"), "tls": {"caBundleSecretRef": {"name": "ca", "key": "ca.crt"}}},
        )
        await wait_condition(standin, SUBS, "s", "Ready")
        await create_event(standin, "e1", {"type": "a", "data": {}})
        await wait_condition(standin, "webhookevents", "e1", "Delivered")
        assert len(tls.at("/s")) == 1


async def test_a_tls_receiver_with_an_untrusted_certificate_fails_with_a_clear_error(standin, operator):
    ca, other = trustme.CA(), trustme.CA()
    async with serve_tls_receiver(ca) as tls:
        await create_secret(standin, "ca", {"ca.crt": other.cert_pem.bytes().decode()})
        await create_subscription(
            standin,
            "s",
            {
                "url": tls.endpoint("/s"),
                "tls": {"caBundleSecretRef": {"name": "ca"}},
                "retry": {"maxAttempts": 1},
            },
        )
        await wait_condition(standin, SUBS, "s", "Ready")
        await create_event(standin, "e1", {"type": "a", "data": {}})
        event = await wait_condition(standin, "webhookevents", "e1", "Failed", "True")
        assert "certificate verify failed" in delivery(event, "s")["lastError"]
        assert tls.at("/s") == []


async def test_a_ca_bundle_that_is_not_pem_makes_the_subscription_tls_config_invalid(standin, operator):
    await create_secret(standin, "ca", {"ca.crt": "garbage"})
    await create_subscription(
        standin, "s", {"url": "https://localhost:1/s", "tls": {"caBundleSecretRef": {"name": "ca"}}}
    )
    sub = await wait_condition(standin, SUBS, "s", "Ready", "False", "TLSConfigInvalid")
    assert "PEM" in condition(sub, "Ready")["message"]


async def test_a_client_certificate_is_presented_for_mutual_tls(standin, operator):
    server_ca, client_ca = trustme.CA(), trustme.CA()
    client = client_ca.issue_cert("webhook-operator.example")
    async with serve_tls_receiver(server_ca, client_ca=client_ca) as tls:
        await create_secret(standin, "ca", {"ca.crt": server_ca.cert_pem.bytes().decode()})
        await create_secret(
            standin,
            "mtls",
            {
                "tls.crt": client.cert_chain_pems[0].bytes().decode(),
                "tls.key": client.private_key_pem.bytes().decode(),
            },
            secret_type="kubernetes.io/tls",
        )
        await create_subscription(
            standin,
            "with-cert",
            {
                "url": tls.endpoint("/with"),
                "tls": {"caBundleSecretRef": {"name": "ca"}, "clientCertSecretRef": {"name": "mtls"}},
            },
        )
        await create_subscription(
            standin,
            "without-cert",
            {
                "url": tls.endpoint("/without"),
                "tls": {"caBundleSecretRef": {"name": "ca"}},
                "retry": {"maxAttempts": 1},
            },
        )
        await wait_condition(standin, SUBS, "with-cert", "Ready")
        await wait_condition(standin, SUBS, "without-cert", "Ready")
        await create_event(standin, "e1", {"type": "a", "data": {}})
        event = await wait_condition(standin, "webhookevents", "e1", "Failed", "True")
        assert delivery(event, "with-cert")["state"] == "Succeeded"
        assert delivery(event, "without-cert")["state"] == "Failed"
        assert len(tls.at("/with")) == 1 and tls.at("/without") == []
        assert json.loads(tls.at("/with")[0].body)["type"] == "a"

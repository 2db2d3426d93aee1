"""The Ready condition tells the truth: each False reason arises from the facts and clears with them."""

from __future__ import annotations

import asyncio

from tests.conftest import make_signing_key
from tests.integration.conftest import (
    condition,
    create_event,
    create_secret,
    create_subscription,
    delete,
    delivery,
    patch,
    read,
    wait_condition,
)

SUBS = "webhooksubscriptions"


async def test_a_missing_secret_makes_it_not_ready_until_the_secret_is_created(standin, receiver, operator):
    await create_subscription(
        standin, "s", {"url": receiver.endpoint("/s"), "signing": {"secretRef": {"name": "k"}}}
    )
    sub = await wait_condition(standin, SUBS, "s", "Ready", "False", "SecretNotFound")
    assert "'k'" in condition(sub, "Ready")["message"]
    await create_event(standin, "e1", {"type": "a", "data": {}})
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered", "False", "InProgress")
    assert delivery(event, "s")["reason"] == "SecretNotFound"

    await create_secret(standin, "k", {"signingKey": make_signing_key()})
    await wait_condition(standin, SUBS, "s", "Ready", "True", "Active", timeout=5)
    await wait_condition(standin, "webhookevents", "e1", "Delivered", "True", timeout=5)
    assert len(receiver.at("/s")) == 1


async def test_an_invalid_key_names_the_secret_key_and_never_its_value(standin, receiver, operator):
    await create_secret(standin, "k", {"signingKey": "not-a-whsec-value-s3cr3t"})
    await create_subscription(
        standin, "s", {"url": receiver.endpoint("/s"), "signing": {"secretRef": {"name": "k"}}}
    )
    sub = await wait_condition(standin, SUBS, "s", "Ready", "False", "InvalidSecret")
    message = condition(sub, "Ready")["message"]
    assert "signingKey" in message
    assert "s3cr3t" not in str(sub)


async def test_a_secret_without_a_signing_key_is_invalid(standin, receiver, operator):
    await create_secret(standin, "k", {"other": "x"})
    await create_subscription(
        standin, "s", {"url": receiver.endpoint("/s"), "signing": {"secretRef": {"name": "k"}}}
    )
    sub = await wait_condition(standin, SUBS, "s", "Ready", "False", "InvalidSecret")
    assert "has no key 'signingKey'" in condition(sub, "Ready")["message"]


async def test_an_invalid_spec_is_reported_and_clears_when_fixed(standin, receiver, operator):
    await create_subscription(standin, "s", {"url": "ftp://example.com/hooks"})
    sub = await wait_condition(standin, SUBS, "s", "Ready", "False", "InvalidSpec")
    assert "http" in condition(sub, "Ready")["message"]
    await patch(standin, SUBS, "s", {"spec": {"url": receiver.endpoint("/s")}})
    await wait_condition(standin, SUBS, "s", "Ready", "True", "Active")


async def test_an_invalid_glob_is_reported_as_an_invalid_spec(standin, receiver, operator):
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s"), "eventTypes": ["order.[a-z]"]})
    sub = await wait_condition(standin, SUBS, "s", "Ready", "False", "InvalidSpec")
    assert "order.[a-z]" in condition(sub, "Ready")["message"]


async def test_the_transition_time_moves_only_when_the_status_changes(standin, receiver, operator):
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s"), "paused": True})
    first = condition(await wait_condition(standin, SUBS, "s", "Ready", "False", "Paused"), "Ready")
    await patch(standin, SUBS, "s", {"spec": {"timeoutSeconds": 5}})  # new generation, same status

    async def observed():
        sub = await read(standin, SUBS, "s")
        return sub if condition(sub, "Ready")["observedGeneration"] == 2 else None

    from tests.conftest import eventually

    second = condition(await eventually(observed), "Ready")
    assert second["lastTransitionTime"] == first["lastTransitionTime"]
    await asyncio.sleep(1.1)  # RFC 3339 seconds: a new transition must show a later time
    await patch(standin, SUBS, "s", {"spec": {"paused": False}})
    third = condition(await wait_condition(standin, SUBS, "s", "Ready", "True"), "Ready")
    assert third["lastTransitionTime"] > first["lastTransitionTime"]
    assert third["observedGeneration"] == 3


async def test_sustained_failure_disables_the_endpoint_and_a_spec_change_reenables_it(
    standin, receiver, operator
):
    from webhook_operator.domain.health import DisableRules

    await operator.restart(disable_rules=DisableRules(max_consecutive_failures=3))
    receiver.script("/down", [503] * 3)
    spec = {"url": receiver.endpoint("/down"), "retry": {"initialDelaySeconds": 0, "maxAttempts": 10}}
    await create_subscription(standin, "s", spec)
    await wait_condition(standin, SUBS, "s", "Ready")
    await create_event(standin, "e1", {"type": "a", "data": {}})
    sub = await wait_condition(standin, SUBS, "s", "Ready", "False", "EndpointDisabled")
    assert sub["status"]["consecutiveFailures"] == 3
    assert sub["status"]["endpointDisabled"]["reason"] == "SustainedFailure"
    await asyncio.sleep(0.5)
    assert len(receiver.at("/down")) == 3  # deliveries wait, nothing more is sent
    event = await read(standin, "webhookevents", "e1")
    assert delivery(event, "s")["state"] in ("Retrying", "Pending")

    await patch(standin, SUBS, "s", {"spec": {"timeoutSeconds": 5}})  # the receiver is fixed now
    await wait_condition(standin, SUBS, "s", "Ready", "True", "Active")
    await wait_condition(standin, "webhookevents", "e1", "Delivered", "True")
    assert len(receiver.at("/down")) == 4


async def test_the_reenable_annotation_brings_a_gone_endpoint_back(standin, receiver, operator):
    receiver.script("/gone", [410])
    await create_subscription(standin, "s", {"url": receiver.endpoint("/gone")})
    await wait_condition(standin, SUBS, "s", "Ready")
    await create_event(standin, "e1", {"type": "a", "data": {}})
    await wait_condition(standin, SUBS, "s", "Ready", "False", "EndpointDisabled")
    await create_event(standin, "e2", {"type": "a", "data": {}})
    event = await wait_condition(standin, "webhookevents", "e2", "Delivered", "False", "InProgress")
    assert delivery(event, "s")["reason"] == "EndpointDisabled"

    await patch(
        standin, SUBS, "s", {"metadata": {"annotations": {"webhooks.openplatform.dev/reenable": "now"}}}
    )
    sub = await wait_condition(standin, SUBS, "s", "Ready", "True")
    assert sub["status"]["reenabled"] == "now"
    await wait_condition(standin, "webhookevents", "e2", "Delivered", "True")


async def test_deleting_a_subscription_ends_its_waiting_deliveries_clearly(standin, receiver, operator):
    await create_subscription(standin, "s", {"url": receiver.endpoint("/s"), "paused": True})
    await wait_condition(standin, SUBS, "s", "Ready", "False", "Paused")
    await create_event(standin, "e1", {"type": "a", "data": {}})
    await wait_condition(standin, "webhookevents", "e1", "Delivered", "False", "InProgress")
    await delete(standin, SUBS, "s")
    event = await wait_condition(standin, "webhookevents", "e1", "Failed", "True", "SubscriptionDeleted")
    assert delivery(event, "s")["state"] == "Failed"
    assert event["status"]["pending"] == 0

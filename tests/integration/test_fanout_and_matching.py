"""Which subscriptions an event goes to: type globs, named subscriptions, one namespace only."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import create_event, create_subscription, delivery, wait_condition


async def _ready(standin, *names, namespace="shop"):
    for name in names:
        await wait_condition(standin, "webhooksubscriptions", name, "Ready", namespace=namespace)


async def test_an_event_fans_out_to_every_subscription_whose_globs_match(standin, receiver, operator):
    await create_subscription(standin, "all", {"url": receiver.endpoint("/all")})
    await create_subscription(
        standin, "orders", {"url": receiver.endpoint("/orders"), "eventTypes": ["order.*"]}
    )
    await create_subscription(
        standin, "exact", {"url": receiver.endpoint("/exact"), "eventTypes": ["order.created"]}
    )
    await create_subscription(
        standin, "invoices", {"url": receiver.endpoint("/invoices"), "eventTypes": ["invoice.*"]}
    )
    await _ready(standin, "all", "orders", "exact", "invoices")

    created = await create_event(standin, "e1", {"type": "order.created", "data": {"id": 1}})
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered")

    assert sorted(d["subscription"] for d in event["status"]["deliveries"]) == ["all", "exact", "orders"]
    assert receiver.at("/invoices") == []
    ids = {r.headers["webhook-id"] for path in ("/all", "/orders", "/exact") for r in receiver.at(path)}
    assert ids == {created["metadata"]["uid"]}  # the same id across subscriptions


async def test_a_nested_type_matches_a_star_glob(standin, receiver, operator):
    await create_subscription(
        standin, "orders", {"url": receiver.endpoint("/orders"), "eventTypes": ["order.*"]}
    )
    await _ready(standin, "orders")
    await create_event(standin, "e1", {"type": "order.item.added", "data": {}})
    await wait_condition(standin, "webhookevents", "e1", "Delivered")
    assert len(receiver.at("/orders")) == 1


async def test_an_event_naming_subscriptions_goes_only_to_those_that_also_match_its_type(
    standin, receiver, operator
):
    await create_subscription(standin, "a", {"url": receiver.endpoint("/a")})
    await create_subscription(standin, "b", {"url": receiver.endpoint("/b")})
    await create_subscription(standin, "c", {"url": receiver.endpoint("/c"), "eventTypes": ["invoice.*"]})
    await _ready(standin, "a", "b", "c")
    await create_event(standin, "e1", {"type": "order.created", "data": {}, "subscriptions": ["a", "c"]})
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered")
    assert [d["subscription"] for d in event["status"]["deliveries"]] == ["a"]
    assert receiver.at("/b") == [] and receiver.at("/c") == []


async def test_an_event_is_never_delivered_to_a_subscription_in_another_namespace(
    standin, receiver, operator
):
    await create_subscription(standin, "mine", {"url": receiver.endpoint("/mine")}, namespace="shop")
    await create_subscription(standin, "theirs", {"url": receiver.endpoint("/theirs")}, namespace="other")
    await _ready(standin, "mine", namespace="shop")
    await _ready(standin, "theirs", namespace="other")
    await create_event(standin, "e1", {"type": "order.created", "data": {}}, namespace="shop")
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered")
    assert [d["subscription"] for d in event["status"]["deliveries"]] == ["mine"]
    assert receiver.at("/theirs") == []


async def test_an_event_nothing_matches_is_delivered_with_reason_no_subscriptions(
    standin, receiver, operator
):
    await create_event(standin, "lonely", {"type": "order.created", "data": {}})
    event = await wait_condition(standin, "webhookevents", "lonely", "Delivered", "True", "NoSubscriptions")
    assert event["status"]["deliveries"] == []
    assert event["status"]["pending"] == 0


async def test_a_subscription_created_later_does_not_receive_an_older_event(standin, receiver, operator):
    await create_subscription(standin, "early", {"url": receiver.endpoint("/early")})
    await _ready(standin, "early")
    await create_event(standin, "e1", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "e1", "Delivered")
    await create_subscription(standin, "late", {"url": receiver.endpoint("/late")})
    await _ready(standin, "late")
    await asyncio.sleep(0.3)
    event = await wait_condition(standin, "webhookevents", "e1", "Delivered")
    assert [d["subscription"] for d in event["status"]["deliveries"]] == ["early"]
    assert receiver.at("/late") == []


async def test_a_fan_out_to_fifty_subscriptions_is_recorded_in_one_status(standin, receiver, operator):
    for n in range(50):
        await create_subscription(standin, f"s{n:02d}", {"url": receiver.endpoint(f"/s{n:02d}")})
    await _ready(standin, *(f"s{n:02d}" for n in range(50)))
    await create_event(standin, "wide", {"type": "order.created", "data": {}})
    event = await wait_condition(standin, "webhookevents", "wide", "Delivered")
    assert event["status"]["succeeded"] == 50
    assert all(delivery(event, f"s{n:02d}")["state"] == "Succeeded" for n in range(50))
    assert standin.count("patch", resource="webhookevents", subresource="status") == 1


async def test_an_event_applied_right_after_its_subscription_is_not_missed(standin, receiver, operator):
    # `kubectl apply -f examples/` creates both within milliseconds, and the two watches race:
    # here the subscription watch lags by 50 ms an event, so the event always arrives first.
    await create_subscription(standin, "warm-up", {"url": receiver.endpoint("/w")}, namespace="warm-up")
    await _ready(standin, "warm-up", namespace="warm-up")  # the watches are live, past their initial lists
    standin.watch_lag["webhooksubscriptions"] = 0.05

    async def apply_pair(n: int) -> None:
        await create_subscription(standin, "sub", {"url": receiver.endpoint(f"/ns{n}")}, namespace=f"ns{n}")
        await create_event(standin, "e1", {"type": "order.created", "data": {}}, namespace=f"ns{n}")

    await asyncio.gather(*(apply_pair(n) for n in range(20)))
    for n in range(20):
        event = await wait_condition(standin, "webhookevents", "e1", "Delivered", namespace=f"ns{n}")
        assert [d["subscription"] for d in event["status"]["deliveries"]] == ["sub"], f"ns{n}"

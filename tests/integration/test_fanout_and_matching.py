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


async def test_a_subscription_the_watch_has_not_brought_yet_still_gets_the_event(standin, receiver, operator):
    # In a namespace already served, the first attempts go out against the index as it is; the
    # status write matches again against the index caught up with the event (a LIST not older
    # than it), so a subscription applied just before the event but still in the lagging watch
    # gets its delivery one reconcile later, and the status records both.
    await create_subscription(standin, "old", {"url": receiver.endpoint("/old")})
    await _ready(standin, "old")
    await create_event(standin, "first", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "first", "Delivered")  # the namespace is served
    standin.watch_lag["webhooksubscriptions"] = 0.3

    await create_subscription(standin, "new", {"url": receiver.endpoint("/new")})
    created = await create_event(standin, "second", {"type": "order.created", "data": {}})

    event = await wait_condition(standin, "webhookevents", "second", "Delivered")
    assert sorted(d["subscription"] for d in event["status"]["deliveries"]) == ["new", "old"]
    assert all(d["state"] == "Succeeded" and d["attempts"] == 1 for d in event["status"]["deliveries"])
    uid = created["metadata"]["uid"]
    assert [r.headers["webhook-id"] for r in receiver.at("/new")] == [uid]
    assert [r.headers["webhook-id"] for r in receiver.at("/old")].count(uid) == 1


async def test_an_in_flight_report_does_not_record_a_match_the_watch_had_not_brought(
    standin, receiver, operator
):
    # A slow attempt is shown as InFlight in the status; recording the plan's matches there would
    # close the match for good. While the index caught up with the event matches more, no such
    # report is written, and the final write records every match.
    await operator.restart(in_flight_report_seconds=0.2)
    receiver.hang("/slow")
    await create_subscription(
        standin, "slow", {"url": receiver.endpoint("/slow"), "timeoutSeconds": 1, "retry": {"maxAttempts": 1}}
    )
    await _ready(standin, "slow")
    await create_event(standin, "first", {"type": "order.created", "data": {}})
    await wait_condition(standin, "webhookevents", "first", "Failed", timeout=5)  # the namespace is served
    standin.watch_lag["webhooksubscriptions"] = 0.5

    await create_subscription(standin, "new", {"url": receiver.endpoint("/new")})
    await create_event(standin, "second", {"type": "order.created", "data": {}})

    event = await wait_condition(standin, "webhookevents", "second", "Failed", timeout=8)
    states = {d["subscription"]: d["state"] for d in event["status"]["deliveries"]}
    assert states == {"new": "Succeeded", "slow": "Failed"}
    assert len(receiver.at("/new")) == 1

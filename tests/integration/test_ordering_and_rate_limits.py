"""Delivery options through the real operator to real receivers: ordering per key, rate limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.conftest import eventually
from tests.integration.conftest import (
    create_event,
    create_subscription,
    delivery,
    read,
    wait_condition,
)
from tests.integration.receiver import Receiver
from webhook_operator.testing.operator_thread import OperatorThread

SUBS, EVENTS = "webhooksubscriptions", "webhookevents"
# Quick retries, 2 s apart: time enough for the test to act while the head waits.
QUICK_RETRY = {"maxAttempts": 5, "backoff": "Linear", "initialDelaySeconds": 2, "maxDelaySeconds": 2}


async def create_keyed(standin: Any, name: str, key: str) -> str:
    created = await create_event(
        standin, name, {"type": "order.updated", "data": {"n": name}, "orderingKey": key}
    )
    return str(created["metadata"]["uid"])


def received(receiver: Receiver, path: str, count: int) -> Callable[[], Awaitable[bool | None]]:
    async def probe() -> bool | None:
        return len(receiver.at(path)) >= count or None

    return probe


async def ordered_subscription(
    standin: Any, receiver: Receiver, failures: int, retry: dict[str, Any] = QUICK_RETRY
) -> None:
    """A PerKey subscription at /ordered, whose first `failures` requests answer 503."""
    await create_subscription(
        standin, "ordered", {"url": receiver.endpoint("/ordered"), "ordering": "PerKey", "retry": retry}
    )
    await wait_condition(standin, SUBS, "ordered", "Ready")
    receiver.script("/ordered", [503] * failures)


def arrivals(receiver: Receiver, path: str) -> list[str]:
    return [request.headers["webhook-id"] for request in receiver.at(path)]


async def test_events_of_one_key_arrive_in_creation_order_while_the_first_is_retried_and_other_keys_flow(
    standin: Any, receiver: Receiver, operator: OperatorThread
) -> None:
    await ordered_subscription(standin, receiver, failures=2)  # the head's first two attempts fail
    # Names run against creation order, so the order delivered cannot come from the names.
    names = ["z-first", "y-second", "x-third", "w-fourth", "v-fifth"]
    uids = [await create_keyed(standin, name, "order-1") for name in names]

    async def second_waits() -> dict[str, Any] | None:
        event = await read(standin, EVENTS, "y-second")
        entries = ((event or {}).get("status") or {}).get("deliveries") or []
        return event if entries and entries[0].get("reason") == "WaitingForPredecessor" else None

    waiting = await eventually(second_waits, timeout=5, what="y-second to wait for its predecessor")
    assert delivery(waiting, "ordered")["state"] == "Pending"
    delivered = next(c for c in waiting["status"]["conditions"] if c["type"] == "Delivered")
    assert "waiting on ordered: WaitingForPredecessor" in delivered["message"]
    await eventually(received(receiver, "/ordered", 2), timeout=5, what="two failed attempts")
    # While the head of order-1 waits for its third attempt, an event of another key goes out.
    other = await create_keyed(standin, "other-key", "order-2")
    await wait_condition(standin, EVENTS, "other-key", "Delivered", timeout=5)
    for name in names:
        await wait_condition(standin, EVENTS, name, "Delivered", timeout=20)
    assert arrivals(receiver, "/ordered") == [uids[0], uids[0], other, *uids], (
        "the head three times (two failures), the other key while the head waited, then each in turn"
    )


async def test_a_failed_predecessor_is_final_and_releases_the_next_event(
    standin: Any, receiver: Receiver, operator: OperatorThread
) -> None:
    retry = {**QUICK_RETRY, "maxAttempts": 1}
    await ordered_subscription(standin, receiver, failures=1, retry=retry)
    first = await create_keyed(standin, "b-first", "k")
    second = await create_keyed(standin, "a-second", "k")
    await wait_condition(standin, EVENTS, "b-first", "Failed", timeout=10)
    await wait_condition(standin, EVENTS, "a-second", "Delivered", timeout=10)
    assert arrivals(receiver, "/ordered") == [first, second]


async def test_the_order_holds_across_a_restart_of_the_operator(
    standin: Any, receiver: Receiver, operator: OperatorThread
) -> None:
    await ordered_subscription(standin, receiver, failures=1)
    uids = [await create_keyed(standin, name, "k") for name in ("c-1", "b-2", "a-3")]
    await eventually(received(receiver, "/ordered", 1), timeout=5, what="the head's first attempt")
    await operator.kill()  # no graceful shutdown: what it knew in memory is gone
    await operator.start()
    for name in ("c-1", "b-2", "a-3"):
        await wait_condition(standin, EVENTS, name, "Delivered", timeout=20)
    assert arrivals(receiver, "/ordered") == [uids[0], *uids]


async def test_a_rate_limit_keeps_the_receiver_at_its_rate_retries_included(
    standin: Any, receiver: Receiver, operator: OperatorThread
) -> None:
    await create_subscription(
        standin,
        "limited",
        {"url": receiver.endpoint("/limited"), "rateLimit": {"requestsPerSecond": 5}, "retry": QUICK_RETRY},
    )
    await wait_condition(standin, SUBS, "limited", "Ready")
    receiver.script("/limited", [503, 503])  # two retries must take tokens too
    names = [f"e{i:02d}" for i in range(15)]
    for name in names:
        await create_event(standin, name, {"type": "order.created", "data": {}})

    async def one_rate_limited() -> bool | None:
        for name in names:
            event = await read(standin, EVENTS, name)
            for entry in ((event or {}).get("status") or {}).get("deliveries") or []:
                if entry.get("reason") == "RateLimited" and entry.get("state") == "Pending":
                    return True
        return None

    await eventually(one_rate_limited, timeout=5, what="a delivery waiting for a token, as its status says")
    for name in names:
        await wait_condition(standin, EVENTS, name, "Delivered", timeout=20)
    times = [request.at for request in receiver.at("/limited")]
    assert len(times) == 17
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 4.0 <= rate <= 5.3, f"{rate:.2f} requests/s"
    # The bucket grants at most burst + 5 tokens in any second; each request leaves when its
    # event's reconcile gets to it, a little late under load, so allow two more at the receiver.
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 8, f"{busiest} requests within one second"
    assert operator.engine is not None
    deferred = operator.engine.metrics.registry.get_sample_value(
        "webhook_deliveries_deferred_total",
        {"namespace": "shop", "subscription": "limited", "reason": "RateLimited"},
    )
    assert deferred is not None and deferred >= 10


async def test_without_a_rate_limit_a_burst_goes_out_at_once(
    standin: Any, receiver: Receiver, operator: OperatorThread
) -> None:
    await create_subscription(standin, "free", {"url": receiver.endpoint("/free")})
    await wait_condition(standin, SUBS, "free", "Ready")
    started = time.monotonic()
    for i in range(10):
        await create_event(standin, f"f{i}", {"type": "order.created", "data": {}})
    for i in range(10):
        await wait_condition(standin, EVENTS, f"f{i}", "Delivered")
    assert time.monotonic() - started < 1.5
    await asyncio.sleep(0)

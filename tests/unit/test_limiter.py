"""The in-flight limiter: at most `limit` concurrent requests per endpoint, a short wait, then no."""

from __future__ import annotations

import asyncio

from webhook_operator.domain.keys import SubscriptionKey
from webhook_operator.engine.limiter import InFlightLimiter

SUB = SubscriptionKey("shop", "crm")


async def test_slots_up_to_the_limit_are_granted_at_once_and_the_next_waits_then_gives_up() -> None:
    limiter = InFlightLimiter()
    assert await limiter.acquire(SUB, 2, wait=0.01)
    assert await limiter.acquire(SUB, 2, wait=0.01)
    assert not await limiter.acquire(SUB, 2, wait=0.05)
    assert limiter.in_flight == 2
    assert await limiter.acquire(SubscriptionKey("shop", "other"), 2, wait=0.01), "per endpoint"


async def test_a_released_slot_goes_to_a_waiter() -> None:
    limiter = InFlightLimiter()
    assert await limiter.acquire(SUB, 1, wait=0.01)
    waiter = asyncio.ensure_future(limiter.acquire(SUB, 1, wait=1.0))
    await asyncio.sleep(0.01)
    limiter.release(SUB, 1)
    assert await waiter
    assert limiter.in_flight == 1


async def test_a_changed_limit_applies_to_new_requests_at_once() -> None:
    limiter = InFlightLimiter()
    assert await limiter.acquire(SUB, 1, wait=0.01)
    assert await limiter.acquire(SUB, 2, wait=0.01), "the new limit starts with fresh slots"
    limiter.release(SUB, 1)  # one sent under the old limit finishes: no slot of the new one is freed
    assert await limiter.acquire(SUB, 2, wait=0.01)
    assert not await limiter.acquire(SUB, 2, wait=0.01)

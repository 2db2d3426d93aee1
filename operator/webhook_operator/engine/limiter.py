"""Per-subscription concurrency: at most `maxInFlight` requests to one endpoint at a time.

A slot that cannot be had within a short wait is not waited for: the delivery is deferred and
its event's worker moves on, so a saturated endpoint never holds a worker that other events need.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class InFlightLimiter:
    def __init__(self) -> None:
        self._slots: dict[Hashable, tuple[int, asyncio.Semaphore]] = {}
        self.in_flight = 0

    async def acquire(self, key: Hashable, limit: int, *, wait: float) -> bool:
        known = self._slots.get(key)
        if known is None or known[0] != limit:
            # A changed limit takes effect for new requests; those in flight finish on the old one.
            known = (limit, asyncio.Semaphore(limit))
            self._slots[key] = known
        semaphore = known[1]
        if semaphore.locked():
            try:
                await asyncio.wait_for(semaphore.acquire(), wait)
            except TimeoutError:
                return False
        else:
            await semaphore.acquire()
        self.in_flight += 1
        return True

    def release(self, key: Hashable, limit: int) -> None:
        self.in_flight -= 1
        known = self._slots.get(key)
        if known is not None and known[0] == limit:
            known[1].release()

    def forget(self, key: Hashable) -> None:
        self._slots.pop(key, None)

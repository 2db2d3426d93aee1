"""A controller-runtime style work queue: the reconcile loop's scheduler.

- A key waits in the queue at most once, however often it is added (changes coalesce).
- A key is processed by one worker at a time; a key added while it is being processed is
  queued again when that worker is done, so no change is missed.
- `add_after(key, delay)` schedules a key for later (backoff, TTL); an earlier schedule wins.
- Keys added now (a new or changed resource) go before keys whose delay has passed (retries,
  TTLs) and keys resumed (`add_resumed`: a resource read back with work already recorded, as
  after a restart), except that every fifth key handed out is one of those while both wait: a
  storm of retries to a broken endpoint, or a restart's backlog, cannot hold back new events,
  nor be starved by them.
- An added key wakes one waiting worker, not all of them, and due keys are promoted by one
  timer for the earliest schedule: with 64 idle workers, waking every one of them per key
  (and per expiring retry) cost more CPU than the reconcile itself.

Keys are small tuples; the queue never holds resource bodies, so its memory is bounded by the
number of resources, not by their size.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

_FRESH_PER_DUE = 4  # while both lanes wait: this many added keys, then one due key


class WorkQueue(Generic[K]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ready: deque[K] = deque()  # added now
        self._due: deque[K] = deque()  # promoted from add_after once due
        self._fresh_run = 0  # added keys handed out in a row while due keys waited
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing: requeue when done
        self._delayed: list[tuple[float, int, K]] = []
        self._due_at: dict[K, float] = {}
        self._counter = itertools.count()
        self._waiters: deque[asyncio.Future[None]] = deque()  # idle workers, longest waiting first
        self._timer: asyncio.TimerHandle | None = None  # promotes the earliest delayed key when due
        self._timer_due = float("inf")
        self._closed = False

    def __len__(self) -> int:
        return len(self._ready) + len(self._due)

    @property
    def scheduled(self) -> int:
        return len(self._due_at)

    def add(self, key: K) -> None:
        self._add(key, self._ready)

    def add_resumed(self, key: K) -> None:
        """Queue a key behind new ones, in the lane of due retries (see the module's docstring)."""
        self._add(key, self._due)

    def _add(self, key: K, lane: deque[K]) -> None:
        if self._closed:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            lane.append(key)
            self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        due = self._clock() + delay
        if self._due_at.get(key, float("inf")) <= due:
            return  # an earlier (or equal) schedule already exists
        superseded = key in self._due_at
        self._due_at[key] = due
        heapq.heappush(self._delayed, (due, next(self._counter), key))
        if superseded:
            self._compact()
        self._arm_timer()

    def forget(self, key: K) -> None:
        """Drop a key's delayed schedule (the resource is gone or done); a queued key still runs once."""
        if self._due_at.pop(key, None) is not None:
            self._compact()

    def _compact(self) -> None:
        # A dropped or superseded schedule stays in the heap until it comes up; rebuild the heap
        # when such leftovers outnumber the live schedules, so memory follows the live ones.
        if not self._due_at:
            self._delayed.clear()
        elif len(self._delayed) > 2 * len(self._due_at) + 64:
            self._delayed = [entry for entry in self._delayed if self._due_at.get(entry[2]) == entry[0]]
            heapq.heapify(self._delayed)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        while self._waiters:
            self._wake_one()

    async def get(self) -> K | None:
        """The next key to process, or None once the queue is closed."""
        while True:
            self._promote_due()
            if self._closed:
                return None
            lane = self._next_lane()
            if lane is not None:
                key = lane.popleft()
                self._queued.discard(key)
                self._processing.add(key)
                return key
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: hand the wake-up to another worker
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def _promote_due(self) -> None:
        now, popped = self._clock(), False
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            popped = True
            if self._due_at.get(key) == due:
                del self._due_at[key]
                self._add(key, self._due)
        if popped:
            self._compact()  # superseded leftovers must not outlive the live schedules

    def _next_lane(self) -> deque[K] | None:
        if self._ready and (not self._due or self._fresh_run < _FRESH_PER_DUE):
            self._fresh_run += 1
            return self._ready
        if self._due:
            self._fresh_run = 0
            return self._due
        return None

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _arm_timer(self) -> None:
        """Have the timer fire at the earliest schedule (it only moves earlier; late fires re-arm)."""
        if not self._delayed or self._closed:
            return
        due = self._delayed[0][0]
        if self._timer is not None and self._timer_due <= due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop yet: get() promotes due keys whenever it runs
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = loop.call_later(max(0.0, due - self._clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_due = None, float("inf")
        self._promote_due()
        self._arm_timer()


async def run_workers(
    queue: WorkQueue[K],
    reconcile: Callable[[K], Awaitable[None]],
    *,
    workers: int,
    on_error: Callable[[K, BaseException], None],
) -> None:
    """Process keys with `workers` concurrent workers until the queue is closed.

    A reconcile that raises is logged and retried with a per-key exponential backoff (1 s to
    5 min), so an unexpected error never leaves a resource behind for good.
    """
    failures: dict[K, int] = {}

    async def worker() -> None:
        while (key := await queue.get()) is not None:
            try:
                await reconcile(key)
                failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                on_error(key, error)
                failures[key] = failures.get(key, 0) + 1
                queue.add_after(key, min(300.0, 2.0 ** (failures[key] - 1)))
            finally:
                queue.done(key)

    await asyncio.gather(*(worker() for _ in range(workers)))

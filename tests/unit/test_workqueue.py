"""The work queue: dedup, one worker per key, re-runs of keys changed mid-processing, delays, close."""

from __future__ import annotations

import asyncio

import pytest

from webhook_operator.engine.workqueue import WorkQueue, run_workers


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> WorkQueue[str]:
    return WorkQueue(clock=clock)


async def get_now(queue: WorkQueue[str]) -> str | None:
    """The next key if one is ready at once; fails instead of waiting."""
    return await asyncio.wait_for(queue.get(), 0.5)


async def nothing_ready(queue: WorkQueue[str]) -> bool:
    try:
        await asyncio.wait_for(queue.get(), 0.05)
    except TimeoutError:
        return True
    return False


async def test_a_key_added_twice_is_processed_once(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.add("b")
    queue.add("a")
    assert len(queue) == 2
    assert [await get_now(queue), await get_now(queue)] == ["a", "b"]
    assert await nothing_ready(queue)


async def test_a_key_being_processed_is_not_handed_to_another_worker(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert await get_now(queue) == "a"
    queue.add("a")
    assert len(queue) == 0
    assert await nothing_ready(queue)


async def test_a_key_added_while_processing_runs_again_after_done(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert await get_now(queue) == "a"
    queue.add("a")
    queue.add("a")
    queue.done("a")
    assert await get_now(queue) == "a"
    queue.done("a")
    assert await nothing_ready(queue)


async def test_a_key_not_added_again_does_not_run_again_after_done(queue: WorkQueue[str]) -> None:
    queue.add("a")
    await get_now(queue)
    queue.done("a")
    assert await nothing_ready(queue)


async def test_add_after_waits_for_the_delay(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add_after("a", 10)
    assert queue.scheduled == 1
    assert await nothing_ready(queue)
    clock.now += 10
    assert await get_now(queue) == "a"
    assert queue.scheduled == 0


async def test_an_earlier_schedule_wins_over_a_later_one(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add_after("a", 10)
    queue.add_after("a", 30)  # ignored: an earlier schedule exists
    queue.add_after("a", 5)  # replaces the 10 s one
    clock.now += 5
    assert await get_now(queue) == "a"
    queue.done("a")
    clock.now += 100  # the superseded 10 s and 30 s schedules do not fire
    assert await nothing_ready(queue)


async def test_an_idle_queue_keeps_no_superseded_schedules(queue: WorkQueue[str], clock: FakeClock) -> None:
    for delay in (30, 20, 10):  # each replaces the one before; the old ones linger in the heap
        queue.add_after("a", delay)
    clock.now += 10
    assert await get_now(queue) == "a"
    queue.done("a")
    assert queue.scheduled == 0
    assert queue._delayed == []  # not held until the superseded 20 s and 30 s times pass


async def test_add_after_with_no_delay_adds_at_once(queue: WorkQueue[str]) -> None:
    queue.add_after("a", 0)
    queue.add_after("b", -3)
    assert [await get_now(queue), await get_now(queue)] == ["a", "b"]


async def test_a_delayed_key_already_queued_is_not_duplicated(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add("a")
    queue.add_after("a", 1)
    clock.now += 1
    assert await get_now(queue) == "a"
    assert await nothing_ready(queue)  # the schedule found it queued: still one run


async def test_forget_drops_a_delayed_schedule(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add_after("a", 5)
    queue.forget("a")
    clock.now += 5
    assert await nothing_ready(queue)


async def test_forgotten_schedules_do_not_pile_up_in_memory(queue: WorkQueue[str], clock: FakeClock) -> None:
    for i in range(10_000):
        queue.add_after(f"k{i}", 3600)
        queue.forget(f"k{i}")
    queue.add_after("live", 5)
    assert queue.scheduled == 1
    assert len(queue._delayed) < 200  # the heap is rebuilt once leftovers outnumber live ones
    clock.now += 5
    assert await get_now(queue) == "live"


async def test_a_waiting_worker_wakes_when_a_delay_expires_in_real_time() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    queue.add_after("a", 0.05)
    assert await asyncio.wait_for(waiting, 1) == "a"


async def test_close_wakes_waiting_workers_with_none(queue: WorkQueue[str]) -> None:
    waiting = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0.01)
    queue.close()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 1) == [None, None, None]


async def test_a_closed_queue_hands_out_nothing_and_takes_nothing(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.close()
    queue.add("b")
    assert await get_now(queue) is None
    assert len(queue) == 1  # "b" was refused


# --- run_workers ---------------------------------------------------------------------------------


async def test_workers_never_reconcile_one_key_concurrently_and_miss_no_change() -> None:
    queue: WorkQueue[str] = WorkQueue()
    running: set[str] = set()
    overlaps: list[str] = []
    runs: dict[str, int] = {}

    async def reconcile(key: str) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        runs[key] = runs.get(key, 0) + 1
        await asyncio.sleep(0.01)
        running.discard(key)

    workers = asyncio.create_task(run_workers(queue, reconcile, workers=8, on_error=lambda k, e: None))
    for _ in range(5):
        for key in "abc":
            queue.add(key)
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)
    queue.close()
    await asyncio.wait_for(workers, 1)
    assert overlaps == []
    assert set(runs) == {"a", "b", "c"}
    assert all(2 <= n <= 5 for n in runs.values())  # coalesced, but the last change was seen


async def test_a_reconcile_that_raises_is_reported_and_retried_later() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    errors: list[tuple[str, str]] = []
    calls = 0

    async def reconcile(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")

    workers = asyncio.create_task(
        run_workers(queue, reconcile, workers=2, on_error=lambda k, e: errors.append((k, str(e))))
    )
    queue.add("a")
    await asyncio.sleep(0.02)
    assert errors == [("a", "boom")]
    assert queue.scheduled == 1  # retried after a backoff, not at once
    clock.now += 1
    queue.add("nudge")  # wake a worker so it sees the fake clock moved
    await asyncio.sleep(0.02)
    assert calls == 3  # "a" again, and "nudge"
    queue.close()
    await asyncio.wait_for(workers, 1)


# --- wake-ups: one added key wakes one worker (the benchmark's CPU finding) -----------------------


async def test_one_added_key_wakes_one_of_many_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiting = [asyncio.create_task(queue.get()) for _ in range(8)]
    await asyncio.sleep(0.01)
    queue.add("a")
    await asyncio.sleep(0.01)
    done = [task for task in waiting if task.done()]
    assert [task.result() for task in done] == ["a"]
    queue.close()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 1) == ["a"] + [None] * 7


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    queue: WorkQueue[str] = WorkQueue()
    first, second = asyncio.create_task(queue.get()), asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    queue.add("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "a"


async def test_keys_added_now_go_before_due_retries_but_retries_are_not_starved(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    for n in range(6):
        queue.add_after(f"retry-{n}", 1)
    clock.now += 1
    for n in range(10):
        queue.add(f"new-{n}")
    order = [await get_now(queue) for _ in range(16)]
    assert order[:4] == ["new-0", "new-1", "new-2", "new-3"]
    assert order[4] == "retry-0"  # every fifth key is a due one while both wait
    assert [key for key in order if key.startswith("new")] == [f"new-{n}" for n in range(10)]
    assert [key for key in order if key.startswith("retry")] == [f"retry-{n}" for n in range(6)]


async def test_resumed_keys_wait_behind_new_ones_and_share_the_retries_lane(queue: WorkQueue[str]) -> None:
    # A restart lists thousands of events already worked on: a new event must not queue behind them.
    for n in range(8):
        queue.add_resumed(f"listed-{n}")
    queue.add("new-0")
    queue.add("new-1")
    order = [await get_now(queue) for _ in range(10)]
    assert order[:2] == ["new-0", "new-1"]
    assert order[2:] == [f"listed-{n}" for n in range(8)]
    for key in order:
        queue.done(key)
    queue.add_resumed("listed-0")  # queued once, whichever lane it came by
    queue.add("listed-0")
    assert [await get_now(queue)] == ["listed-0"] and len(queue) == 0

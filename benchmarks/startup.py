"""The start-up phase: an operator started into a namespace that already holds a history.

The operator delivers `startup_events` events (its own history: each finished with one
Succeeded delivery and the one status write that says so) beside `startup_subs` idle
subscriptions, is stopped, and is started again. Measured from the new process's start:

- `startup_writes_to_finished`: writes to those finished events by the restarted operator, read
  from the API server itself (each event's resourceVersion before the restart and after);
  the target is 0;
- `startup_new_event_s`: a new event, created the moment the new process starts, until its
  receipt (target <= 10 s);
- `startup_ready_s`: until the operator reports ready (kopf's index of subscriptions complete).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from benchmarks.cluster import run_concurrently

if TYPE_CHECKING:
    from benchmarks.run import Benchmark

EVENTS = "webhookevents"
CONCURRENT = 32


async def run(bench: Benchmark) -> None:
    from benchmarks.run import log

    ns, n_events, n_subs = bench.ns_start, bench.s.startup_events, bench.s.startup_subs
    t0 = time.monotonic()

    def idle(i: int) -> Callable[[], Awaitable[Any]]:
        return lambda: bench.subscribe(f"idle-{i:05d}", "/idle", ["bench.never"], namespace=ns)

    await run_concurrently((idle(i) for i in range(n_subs)), CONCURRENT)
    await bench.subscribe("history", "/history", ["bench.history"], namespace=ns)
    await bench.wait_ready(ns, {"history"}, 60)

    def past(i: int) -> Callable[[], Awaitable[Any]]:
        return lambda: bench.create_event(f"past-{i:06d}", "bench.history", i, namespace=ns)

    await run_concurrently((past(i) for i in range(n_events)), CONCURRENT)
    history_s = await _all_finished(bench, ns, n_events, timeout=max(120.0, n_events / 20))
    made_s = time.monotonic() - t0
    log(f"start-up: {n_events} finished events and {n_subs} subscriptions made in {made_s:.0f} s")

    assert bench.operator is not None
    await bench.stop_operator()
    before = await _versions(bench, ns)

    started = time.monotonic()
    launch = asyncio.create_task(bench.launch_operator())
    created = await bench.create_event("after-restart", "bench.load", 0)
    arrivals = await bench.receipts("/sink", {"after-restart": created}, timeout=60)
    new_event_s = (min(arrivals[created.uid]) - started) if created.uid in arrivals else None
    ready_s = await launch - started
    assert bench.operator is not None
    await bench.op_settled(60)
    await asyncio.sleep(2.0)  # anything the restarted operator would still write, it has written by now
    after = await _versions(bench, ns)
    rewritten_names = sorted(name for name, version in after.items() if before.get(name) != version)
    rewritten = len(rewritten_names)
    if rewritten:
        log(f"start-up: written after the restart: {rewritten_names[:5]}")
    bench.results.update(
        startup_events=len(before),
        startup_subscriptions=n_subs,
        startup_history_s=round(history_s, 1),
        startup_writes_to_finished=rewritten,
        startup_new_event_s=None if new_event_s is None else round(new_event_s, 3),
        startup_ready_s=round(ready_s, 3),
    )
    log(
        f"start-up into {len(before)} finished events: {rewritten} writes to them, ready after "
        f"{ready_s:.2f} s, a new event received {new_event_s} s after the process started"
    )


async def _all_finished(bench: Benchmark, namespace: str, count: int, timeout: float) -> float:
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if await bench.rx_count("/history") >= count:
            await bench.op_settled(timeout)
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the start-up history was not delivered within {timeout:.0f} s")


async def _versions(bench: Benchmark, namespace: str) -> dict[str, str]:
    return {
        item["metadata"]["name"]: item["metadata"]["resourceVersion"]
        for item in await bench.cluster.list(EVENTS, namespace)
    }

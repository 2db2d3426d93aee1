"""The fault scenarios as plain coroutines over explicit parts, so the pytest tier (small counts)
and `scripts/soak.py` (large counts) run the very same code and checks."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from tests.faults.harness import (
    Cluster,
    FaultyReceiver,
    FaultyStandin,
    Reply,
    Report,
    Request,
    condition,
    deliveries,
    succeeded_pairs,
    tally,
)

FAST_RETRY = {"initialDelaySeconds": 0, "maxDelaySeconds": 1, "maxAttempts": 20}


class Killable(Protocol):
    async def start(self) -> Any: ...

    async def kill(self) -> float: ...


def jittered(low: float, high: float) -> Callable[[Request], Reply]:
    """200 after a delay between low and high seconds, fixed per webhook-id (reproducible)."""

    def policy(request: Request) -> Reply:
        digest = hashlib.sha256(request.webhook_id.encode()).digest()
        return Reply(200, delay=low + (high - low) * digest[0] / 255)

    return policy


async def first_arrival_after(receivers: Sequence[FaultyReceiver], moment: float, timeout: float) -> float:
    waits = [asyncio.create_task(r.wait_arrival_after(moment, timeout)) for r in receivers]
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is None:
                return task.result()
        return await asyncio.gather(*waits)  # every wait failed: raise the first failure
    finally:
        for task in waits:
            task.cancel()


def merged(counters: Sequence[collections.Counter[tuple[str, str]]]) -> collections.Counter[tuple[str, str]]:
    total: collections.Counter[tuple[str, str]] = collections.Counter()
    for counter in counters:
        total.update(counter)
    return total


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


# -- scenario 1: the operator killed and restarted while events flow ----------------------------------


@dataclasses.dataclass
class Kill:
    mode: str
    at: float
    in_flight: set[tuple[str, str]]
    recovery: float = 0.0  # kill -> first delivery by the restarted operator
    startup: float = 0.0  # restart -> first delivery


async def crash_scenario(
    name: str,
    *,
    cluster: Cluster,
    standin: FaultyStandin,
    receivers: tuple[FaultyReceiver, FaultyReceiver],
    operator: Killable,
    events: int,
    modes: Sequence[str],
    rate: float,
    settle: float = 0.7,
    finish_timeout: float = 60.0,
) -> Report:
    """Kill the operator `len(modes)` times while `events` events flow to two subscriptions.

    Modes: "mid-delivery" (receivers are handling requests), "before"/"after" (a status write
    is held by the stand-in before or after it is applied; needs a real process, whose death
    closes its connections). After each kill the operator is started again at once.
    """
    first, second = receivers
    paths = {"to-a": "/a", "to-b": "/b"}
    first.on("/a", jittered(0.02, 0.15))
    second.on("/b", jittered(0.0, 0.05))
    await cluster.create_secret("to-a-signing", {"signingKey": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"})
    await cluster.subscribe(
        "to-a",
        first.endpoint("/a"),
        maxInFlight=20,
        retry=FAST_RETRY,
        signing={"secretRef": {"name": "to-a-signing"}},
    )
    await cluster.subscribe("to-b", second.endpoint("/b"), maxInFlight=20, retry=FAST_RETRY)
    await operator.start()

    kills: list[Kill] = []
    killing_done = asyncio.Event()

    async def produce() -> list[dict[str, Any]]:
        created = []
        for i in range(events):
            if not killing_done.is_set():
                await asyncio.sleep(1 / rate)
            created.append(
                await cluster.create(
                    "webhookevents", f"crash-{i:04d}", {"type": "order.created", "data": {"n": i}}
                )
            )
        return created

    async def kill_once(mode: str) -> None:
        if mode == "mid-delivery":
            await until(
                lambda: first.in_progress + second.in_progress >= 2, 20, "requests in flight at receivers"
            )
        else:
            standin.gate.arm(mode)
            await asyncio.wait_for(standin.gate.held.wait(), 20)
        at = await operator.kill()
        standin.gate.open()
        await asyncio.sleep(0.05)  # whatever the dead operator had on the wire lands now
        recorded = succeeded_pairs(await cluster.events(), paths)
        spawned = time.monotonic()
        await operator.start()
        received = {(h.path, h.webhook_id) for r in receivers for h in r.hits if h.arrived < spawned}
        kill = Kill(mode, at, received - recorded)
        flowing = await first_arrival_after(receivers, spawned, 30)
        kill.recovery, kill.startup = flowing - at, flowing - spawned
        kills.append(kill)

    async def kill_all() -> None:
        try:
            await asyncio.sleep(settle)
            for mode in modes:
                await kill_once(mode)
                await asyncio.sleep(settle)
        finally:
            killing_done.set()

    created, _ = await asyncio.gather(produce(), kill_all())
    finished = await cluster.wait_finished([e["metadata"]["name"] for e in created], finish_timeout)
    await asyncio.sleep(0.3)  # no late request may arrive after everything is recorded

    uids = {e["metadata"]["uid"] for e in created}
    expected = {(path, uid) for uid in uids for path in paths.values()}
    acks = merged([first.acks(), second.acks()])
    report = tally(name, created, expected, acks)

    not_delivered = [
        e["metadata"]["name"] for e in finished if (condition(e, "Delivered") or {}).get("status") != "True"
    ]
    assert not not_delivered, f"events not Delivered: {not_delivered[:5]}"
    assert report.lost == 0, sorted(expected - set(acks))[:5]
    assert {uid for _, uid in first.requests()} == uids, "the first receiver did not see every webhook-id"
    assert {uid for _, uid in second.requests()} == uids, "the second receiver did not see every webhook-id"
    assert len(kills) == len(modes)
    in_flight_total = sum(len(k.in_flight) for k in kills)
    for pair, n in acks.items():
        if n > 1:
            at_kills = sum(pair in k.in_flight for k in kills)
            assert n - 1 <= at_kills, f"{pair} acknowledged {n} times, in flight at {at_kills} kill(s)"
    assert report.duplicated <= in_flight_total
    recoveries = [k.recovery for k in kills]
    report.recovery = max(recoveries)
    report.recovery_of = "kill -> next delivery (max)"
    report.notes = (
        f"{len(kills)} kills [{', '.join(k.mode for k in kills)}], in flight at kills "
        f"{[len(k.in_flight) for k in kills]}, kill->delivery median {statistics.median(recoveries):.2f}s, "
        f"restart->delivery max {max(k.startup for k in kills):.2f}s"
    )
    return report


# -- helpers shared by the other scenarios ---------------------------------------------------------------


def attempts_by_pair(events: Sequence[dict[str, Any]], paths: dict[str, str]) -> dict[tuple[str, str], int]:
    """The status' attempts per (receiver path, uid)."""
    return {
        (paths[sub], event["metadata"]["uid"]): int(entry.get("attempts", 0))
        for event in events
        for sub, entry in deliveries(event).items()
        if sub in paths
    }


Starter = Callable[[], Awaitable[Any]]

"""Phases 4-7: head-of-line blocking under a retry storm, fan-out, memory, start-up (`startup`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks import startup
from benchmarks.cluster import run_concurrently
from benchmarks.common import (
    CONCURRENT_CREATORS,
    EVENTS,
    SUBS,
    log,
    median,
    percentiles,
)
from benchmarks.harness import Harness


class LoadPhases(Harness):
    async def head_of_line(self) -> None:
        rate, n = self.s.hol_rate, max(10, int(self.s.hol_rate * self.s.hol_seconds))
        _, created = await self.paced("calm", "bench.load", n, rate)
        arrivals = await self.receipts("/sink", created, 60)
        unloaded = percentiles(self.latencies(created, arrivals))
        unloaded_split = await self.split("calm-", created, arrivals)
        lost = n - len(arrivals)
        await self.op_settled(60)

        await self.subscribe(
            "broken",
            "/broken",
            ["bench.broken"],
            maxInFlight=100,
            timeoutSeconds=5,
            retry={
                "maxAttempts": 50,
                "backoff": "Exponential",
                "initialDelaySeconds": 1,
                "maxDelaySeconds": self.s.storm_max_delay,
            },
        )
        await self.wait_ready(self.ns, {"sink", "broken"}, 30)
        storm_before = await self.rx_count("/broken")
        _, storm = await self.burst("storm", "bench.broken", self.s.storm)
        # Every storm event has been tried once, or (the circuit open) waits for its probe.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if await self.rx_count("/broken") - storm_before >= self.s.storm:
                break
            stats = await self.op_stats()
            if stats.get("circuits_open") and stats["queued"] == 0 and stats["events_open"] >= self.s.storm:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # into the retries
        during_before, t0 = await self.rx_count("/broken"), time.monotonic()
        _, created = await self.paced("stormy", "bench.load", n, rate)
        arrivals = await self.receipts("/sink", created, 60)
        storm_rate = (await self.rx_count("/broken") - during_before) / (time.monotonic() - t0)
        loaded = percentiles(self.latencies(created, arrivals))
        loaded_split = await self.split("stormy-", created, arrivals)
        lost += n - len(arrivals)
        stats = await self.op_stats()
        await self.cluster.delete(SUBS, self.ns, "broken")  # the retries end at their next attempt
        self.results["hol"] = {
            "rate": rate,
            "events": n,
            "storm_deliveries": len(storm),
            "storm_attempts_per_s": round(storm_rate, 1),
            "storm_open_events": stats["events_open"],
            "circuits_open": stats.get("circuits_open", 0),
            "lost": lost,
            "unloaded": unloaded,
            "storm": loaded,
            "split": {"unloaded": unloaded_split, "storm": loaded_split},
        }
        self.results["hol_unloaded_p99_ms"] = unloaded["p99_ms"]
        self.results["hol_storm_p99_ms"] = loaded["p99_ms"]
        self.results["hol_p99_ratio"] = round(loaded["p99_ms"] / max(unloaded["p99_ms"], 0.001), 2)
        log(
            f"head-of-line: unloaded {unloaded}, during {self.s.storm} retrying deliveries "
            f"({storm_rate:.0f} attempts/s) {loaded}; split {self.results['hol']['split']}"
        )
        await self.op_settled(90)

    async def fanout(self) -> None:
        f = self.s.fanout
        names = [f"fanout-{i:04d}" for i in range(f)]

        def create(i: int) -> Callable[[], Awaitable[Any]]:
            return lambda: self.subscribe(
                names[i], f"/fanout/{i}", ["bench.fanout"], labels={"bench": "fanout"}
            )

        await run_concurrently((create(i) for i in range(f)), CONCURRENT_CREATORS)
        await self.wait_ready(self.ns, set(names), 60)
        await self.op_settled(30)
        reps: list[dict[str, Any]] = []
        for rep in range(self.s.fanout_reps):
            made = await self.create_event(f"fanout-{rep}", "bench.fanout", rep)
            receipt_at = delivered_at = None
            deadline = time.monotonic() + 60
            while (receipt_at is None or delivered_at is None) and time.monotonic() < deadline:
                if receipt_at is None and await self.rx_id_count(made.uid) >= f:
                    receipt_at = max((await self.rx_arrivals("/fanout")).get(made.uid, [time.monotonic()]))
                if delivered_at is None:
                    event = await self.cluster.get(EVENTS, self.ns, f"fanout-{rep}") or {}
                    if any(
                        c.get("type") == "Delivered" and c.get("status") == "True"
                        for c in (event.get("status") or {}).get("conditions") or []
                    ):
                        delivered_at = time.monotonic()
                await asyncio.sleep(0.005)
            received = await self.rx_id_count(made.uid)
            reps.append(
                {  # seconds from the create returning
                    "received": received,
                    "last_receipt_s": round(receipt_at - made.returned, 3) if receipt_at else None,
                    "delivered_s": round(delivered_at - made.returned, 3) if delivered_at else None,
                }
            )
            await self.op_settled(30)
        self.results["fanout"] = {"subscriptions": f, "reps": reps}
        self.results["fanout_lost"] = sum(f - r["received"] for r in reps)
        self.results["fanout_last_receipt_s"] = median([r["last_receipt_s"] for r in reps])
        self.results["fanout_delivered_s"] = median([r["delivered_s"] for r in reps])
        log(f"fan-out to {f}: {reps}")

        def delete(name: str) -> Callable[[], Awaitable[None]]:
            return lambda: self.cluster.delete(SUBS, self.ns, name)

        await run_concurrently((delete(name) for name in names), CONCURRENT_CREATORS)

    async def memory(self) -> None:
        m = self.s.memory
        before = await self.op_stats()
        self.results["peak_rss_mb"] = round(before["vmhwm"] / 1024, 1)

        def sub(i: int) -> Callable[[], Awaitable[Any]]:
            return lambda: self.subscribe(f"idle-{i:06d}", "/idle", ["bench.never"], namespace=self.ns_memory)

        def event(i: int) -> Callable[[], Awaitable[Any]]:
            return lambda: self.create_event(f"done-{i:06d}", "bench.memory", i)

        t0 = time.monotonic()
        await run_concurrently((sub(i) for i in range(m)), CONCURRENT_CREATORS)
        await run_concurrently((event(i) for i in range(m)), CONCURRENT_CREATORS)
        created_in = time.monotonic() - t0
        deadline = time.monotonic() + max(120.0, m / 20)
        while True:
            stats = await self.op_stats()
            settled = (
                stats["subscriptions"].get(self.ns_memory) == m
                and stats["subscription_queue"] == 0
                and stats["events_open"] == 0
                and stats["queued"] == 0
                and stats["events_finished"] >= self.main_events
            )
            if settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        settle_s = time.monotonic() - t0
        await asyncio.sleep(1.0)
        stats = await self.op_stats()
        self.results.update(
            rss_mb_at_memory=round(stats["vmrss"] / 1024, 1),
            peak_rss_mb_overall=round(stats["vmhwm"] / 1024, 1),
            memory_subscriptions=stats["subscriptions"].get(self.ns_memory, 0),
            memory_finished_events=stats["events_finished"],
            memory_settled=settled,
            memory_create_s=round(created_in, 1),
            memory_settle_s=round(settle_s, 1),
        )
        log(
            f"memory: {stats['subscriptions'].get(self.ns_memory)} subscriptions, {stats['events_finished']} "
            f"finished events known: RSS {self.results['rss_mb_at_memory']} MB (settled in {settle_s:.0f} s)"
        )

    async def startup(self) -> None:
        await startup.run(self)

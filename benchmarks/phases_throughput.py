"""Phases 1-3: the ceilings of the machine and API server, sustained throughput, latency at half rate."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from benchmarks import profiles
from benchmarks.cluster import run_concurrently
from benchmarks.common import (
    CONCURRENT_CREATORS,
    EVENTS,
    HTTP_CONCURRENCY,
    event_data,
    log,
    own_cpu_seconds,
    percentiles,
)
from benchmarks.harness import Harness
from webhook_operator.domain.deliveries import Delivery, State
from webhook_operator.domain.egress import EgressPolicy
from webhook_operator.domain.event_status import render_status, summarize
from webhook_operator.domain.wire import OutgoingRequest
from webhook_operator.sender import Sender


class ThroughputPhases(Harness):
    async def ceilings(self) -> None:
        n = self.s.ceiling_ops
        names = [f"ceiling-{i:06d}" for i in range(n)]

        def create(i: int) -> Callable[[], Awaitable[Any]]:
            return lambda: self.cluster.create(
                EVENTS, self.ns_ceiling, names[i], {"type": "bench.ceiling", "data": event_data(i)}
            )

        elapsed = await run_concurrently((create(i) for i in range(n)), CONCURRENT_CREATORS)
        l_create = n / elapsed
        now = dt.datetime.now(dt.UTC)
        delivery = Delivery(
            "sink",
            State.SUCCEEDED,
            attempts=1,
            last_status_code=200,
            last_attempt_time=now,
            succeeded_time=now,
        )
        status = render_status(
            {}, (delivery,), summarize((delivery,)), now=now, generation=1, redelivered=None
        )

        def patch(i: int) -> Callable[[], Awaitable[Any]]:
            return lambda: self.cluster.patch_status(EVENTS, self.ns_ceiling, names[i], status)

        elapsed = await run_concurrently((patch(i) for i in range(n)), CONCURRENT_CREATORS)
        l_status = n / elapsed
        self.results.update(
            L_create=round(l_create, 1),
            L_status=round(l_status, 1),
            L_api=round(1 / (1 / l_create + 1 / l_status), 1),
        )
        log(
            f"ceilings: L_create {l_create:.0f}/s, L_status {l_status:.0f}/s, L_api {self.results['L_api']}/s"
        )

    async def http_ceiling(self) -> None:
        body = json.dumps({"type": "bench.http", "data": {"blob": "x" * 960}}).encode()
        n = self.s.http_requests
        url = self.rx + "/http"
        headers = (("Content-Type", "application/json"), ("webhook-id", "msg_http"))

        sender = Sender(EgressPolicy.from_cidrs(["127.0.0.0/8"]))
        failures = 0

        async def send_own() -> None:
            nonlocal failures
            result = await sender.send(OutgoingRequest(url, headers, body), timeout=10)
            failures += result.status_code != 200

        try:
            await run_concurrently((send_own for _ in range(200)), HTTP_CONCURRENCY)  # warm the pool
            own = n / await run_concurrently((send_own for _ in range(n)), HTTP_CONCURRENCY)
        finally:
            await sender.aclose()

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def send_plain() -> None:
                nonlocal failures
                async with session.post(url, data=body, headers=dict(headers)) as response:
                    await response.read()
                    failures += response.status != 200

            await run_concurrently((send_plain for _ in range(200)), HTTP_CONCURRENCY)
            plain = n / await run_concurrently((send_plain for _ in range(n)), HTTP_CONCURRENCY)
        self.results.update(
            L_http_sender=round(own, 1), L_http_aiohttp=round(plain, 1), http_failures=failures
        )
        log(f"L_http: project Sender {own:.0f}/s, plain aiohttp {plain:.0f}/s ({failures} failures)")

    async def sustained(self) -> None:
        n = self.s.events
        stats_before = await self.op_settled(30)
        writes_before = await self.cluster.write_counts()
        rx_before = await self.rx_count("/sink")
        cpu_before = {name: helper.cpu_seconds() for name, helper in self.helpers.items()}
        cpu_before["producer"] = own_cpu_seconds()
        recording = None
        if self.s.profile and profiles.py_spy() and self.operator is not None:
            recording = profiles.Recording(self.operator.pid, self.s.profile)
        elif self.s.profile:
            async with self.http.post(self.control + "/profile/start"):
                pass
        started, created = await self.burst("load", "bench.load", n)
        created_in = time.monotonic() - started
        arrivals = await self.receipts("/sink", created, max(60.0, n / 10))
        last = max((max(times) for times in arrivals.values()), default=time.monotonic())
        stats_after = await self.op_settled(120)
        settled_at = time.monotonic()
        if recording is not None:
            path = recording.stop()
            log(f"py-spy profile of the operator in {path}:\n{profiles.summarize(path)}")
        elif self.s.profile:
            async with self.http.post(self.control + "/profile/stop", params={"path": self.s.profile}):
                pass
            log(f"pyinstrument profile of the operator in {self.s.profile} (and .html, .pyisession)")
        cpu = {name: helper.cpu_seconds() - cpu_before[name] for name, helper in self.helpers.items()}
        cpu["producer"] = own_cpu_seconds() - cpu_before["producer"]
        writes_after = await self.cluster.write_counts()
        received = len(arrivals)
        throughput = received / (last - started)
        breakdown: dict[str, float] = {}
        if writes_before is not None and writes_after is not None:
            for what in set(writes_before) | set(writes_after):
                delta = writes_after.get(what, 0) - writes_before.get(what, 0)
                if delta:
                    breakdown[what] = round(delta / max(1, received), 4)
            api_writes = sum(writes_after.values()) - sum(writes_before.values())
            source = "API server (stand-in request counts)"
        else:  # a real cluster: the operator's API-writes metric, plus the producer's creates
            api_writes = (
                sum(stats_after["api_writes"].values()) - sum(stats_before["api_writes"].values()) + n
            )
            source = "operator's webhook_operator_api_writes_total + producer creates"
        per_event = api_writes / max(1, received)
        self.results.update(
            throughput=round(throughput, 1),
            throughput_over_L_api=round(throughput / self.results["L_api"], 3),
            sustained_events=n,
            sustained_received=received,
            sustained_lost=n - received,
            sustained_duplicates=sum(len(t) - 1 for t in arrivals.values()),
            sustained_create_rate=round(n / created_in, 1),
            sustained_all_delivered_s=round(settled_at - started, 2),
            latency_full=percentiles(self.latencies(created, arrivals)),
            latency_full_split=await self.split("load-", created, arrivals),
            api_writes_per_event=round(per_event, 3),
            operator_writes_per_event=round(per_event - 1, 3),
            api_writes_source=source,
            api_writes_by_kind=breakdown,
            operator_cpu_s_per_1000=round(cpu["operator"] / max(1, received) * 1000, 3),
            helper_cpu_s_per_1000={name: round(v / max(1, received) * 1000, 3) for name, v in cpu.items()},
            sink_requests=await self.rx_count("/sink") - rx_before,
        )
        if "standin" in cpu:
            # The machine's own ceiling: every process of the run is on its cores, so no design can
            # deliver more events per second than cores / (CPU seconds all of them spend per event).
            cpu_per_event = sum(cpu.values()) / max(1, received)
            cores = os.cpu_count() or 1
            self.results["L_cpu"] = round(cores / cpu_per_event, 1)
            self.results["throughput_over_L_cpu"] = round(throughput / self.results["L_cpu"], 3)
            self.results["operator_cpu_share"] = round(cpu["operator"] / sum(cpu.values()), 3)
        log(
            f"sustained: {received}/{n} received, {throughput:.0f} events/s "
            f"({self.results['throughput_over_L_api']:.2f} x L_api), latency {self.results['latency_full']}, "
            f"{per_event:.2f} API writes/event, operator CPU {self.results['operator_cpu_s_per_1000']} s/1000"
        )

    async def half_rate(self) -> None:
        rate = max(1.0, self.results["throughput"] / 2)
        n = max(20, min(self.s.events, int(rate * self.s.paced_seconds)))
        await self.op_settled(30)
        _, created = await self.paced("half", "bench.load", n, rate)
        arrivals = await self.receipts("/sink", created, 60)
        self.results["half_rate"] = {
            "rate": round(rate, 1),
            "events": n,
            "lost": n - len(arrivals),
            **percentiles(self.latencies(created, arrivals)),
            "split": await self.split("half-", created, arrivals),
        }
        self.results["half_rate_p50_ms"] = self.results["half_rate"]["p50_ms"]
        self.results["half_rate_p99_ms"] = self.results["half_rate"]["p99_ms"]
        log(f"half rate: {self.results['half_rate']}")
        await self.op_settled(60)

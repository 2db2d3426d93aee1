"""`python -m benchmarks`: the operator against the ceilings of the machine and API server it runs on.

One run, one machine, one API server (the embedded stand-in by default, or a real cluster with
`--kubeconfig`), in this order:

1. ceilings, before the operator starts, in a namespace it does not watch: `L_create` (custom
   resource creates, 32 concurrent), `L_status` (status merge-patches, 32 concurrent),
   `L_api = 1/(1/L_create + 1/L_status)`; `L_http`, POSTs per second from this process to the
   receiver process (64 concurrent), with the operator's own `Sender` and with plain aiohttp;
2. sustained: N events to one subscription, created as fast as the API takes them;
3. latency at half of the sustained rate (paced creation);
4. head-of-line: a paced healthy stream alone, then again while 1,000 deliveries retry
   against an endpoint that answers 503;
5. fan-out: one event to 200 subscriptions, time to the last receipt and to Delivered=True;
6. memory: RSS with 10,000 subscriptions and 10,000 finished events known to the operator.

Progress goes to stderr; stdout gets a table and one JSON line (only the JSON line with
`--json-only`). docs/performance.md explains the method and the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from benchmarks import procs, profiles, startup
from benchmarks.cluster import Cluster, connection_from_kubeconfig, run_concurrently
from webhook_operator import __version__
from webhook_operator.domain.deliveries import Delivery, State
from webhook_operator.domain.egress import EgressPolicy
from webhook_operator.domain.event_status import render_status, summarize
from webhook_operator.domain.wire import OutgoingRequest
from webhook_operator.sender import Sender

EVENTS, SUBS = "webhookevents", "webhooksubscriptions"
CONCURRENT_CREATORS = 32
HTTP_CONCURRENCY = 64


@dataclasses.dataclass
class Settings:
    events: int = 2000
    fanout: int = 200
    storm: int = 1000
    storm_max_delay: int = 10  # the broken subscription's retry: Exponential from 1 s, capped here
    memory: int = 10_000
    startup_events: int = 10_000
    startup_subs: int = 1_000
    ceiling_ops: int = 2000
    http_requests: int = 5000
    paced_seconds: float = 8.0
    hol_rate: float = 25.0
    hol_seconds: float = 10.0
    fanout_reps: int = 3
    workers: int = 64
    circuit_after_failures: int | None = None  # None: the operator's default
    kubeconfig: str | None = None
    quick: bool = False
    json_only: bool = False
    profile: str | None = None
    keep_logs: str | None = None
    phases: tuple[str, ...] = ("sustained", "half_rate", "head_of_line", "fanout", "memory", "startup")


QUICK: dict[str, Any] = {
    "events": 200,
    "fanout": 20,
    "storm": 100,
    "memory": 500,
    "startup_events": 300,
    "startup_subs": 30,
    "ceiling_ops": 300,
    "http_requests": 600,
    "paced_seconds": 1.5,
    "hol_rate": 20.0,
    "hol_seconds": 2.0,
    "fanout_reps": 1,
}

TARGETS = {
    # metric: (comparison, bound, what it is)
    "throughput_over_L_api": (">=", 0.5, "sustained throughput / L_api"),
    "half_rate_p50_ms": ("<=", 50.0, "latency p50 at half rate"),
    "half_rate_p99_ms": ("<=", 500.0, "latency p99 at half rate"),
    "fanout_delivered_s": ("<=", 1.0, "fan-out to Delivered"),
    "hol_p99_ratio": ("<=", 1.5, "healthy p99 in storm / unloaded"),
    "api_writes_per_event": ("<=", 2.0, "API writes per event (with its create)"),
    "rss_mb_at_memory": ("<=", 200.0, "RSS with the memory set known"),
    "startup_writes_to_finished": ("<=", 0, "writes to finished events after a restart"),
    "startup_new_event_s": ("<=", 10.0, "a new event's receipt after a restart (s)"),
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) of latencies in seconds, as milliseconds."""
    if not values:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    ordered = sorted(values)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return round(ordered[index] * 1000, 2)

    return {"p50_ms": rank(50), "p95_ms": rank(95), "p99_ms": rank(99)}


def event_data(i: int) -> dict[str, Any]:
    """A typical small order event (about 300 bytes of JSON)."""
    return {
        "orderId": 100_000 + i,
        "customer": {"id": f"cus_{i % 977:05d}", "country": "DE"},
        "amount": {"value": f"{(i % 500) + 9.99:.2f}", "currency": "EUR"},
        "items": [{"sku": f"SKU-{(i * 7) % 1000:04d}", "quantity": 1 + i % 3} for _ in range(3)],
        "channel": "web",
    }


@dataclasses.dataclass
class Created:
    uid: str
    returned: float  # time.monotonic() when the create call returned


class Benchmark:
    def __init__(
        self,
        settings: Settings,
        cluster: Cluster,
        receiver_url: str,
        http: aiohttp.ClientSession,
        workdir: Path,
        helpers: dict[str, procs.Helper],
    ) -> None:
        self.s = settings
        self._helpers = helpers
        self.cluster = cluster
        self.rx = receiver_url
        self.http = http
        self.workdir = workdir
        self.results: dict[str, Any] = {}
        self.operator: procs.Helper | None = None
        self.control = ""
        self.ns = ""
        self.ns_memory = ""
        self.ns_ceiling = ""
        self.ns_start = ""
        self._operator_log: Any = None
        self.main_events = 0  # events created in the main namespace so far

    # -- the receiver and the operator's control port ------------------------------------------

    async def rx_count(self, prefix: str) -> int:
        async with self.http.get(self.rx + "/_bench/counts") as response:
            counts = (await response.json())["counts"]
        return sum(n for path, n in counts.items() if path.startswith(prefix))

    async def rx_id_count(self, uid: str) -> int:
        async with self.http.get(self.rx + "/_bench/id", params={"id": uid}) as response:
            return int((await response.json())["count"])

    async def rx_arrivals(self, prefix: str) -> dict[str, list[float]]:
        async with self.http.get(self.rx + "/_bench/arrivals", params={"prefix": prefix}) as response:
            raw = (await response.json())["arrivals"]
        found: dict[str, list[float]] = {}
        for _path, uid, at in raw:
            found.setdefault(uid, []).append(at)
        return found

    async def op_stats(self) -> dict[str, Any]:
        params = [("ns", self.ns), ("ns", self.ns_memory)]
        async with self.http.get(self.control + "/stats", params=params) as response:
            return dict(await response.json())

    async def op_settled(self, timeout: float) -> dict[str, Any]:
        """Wait until the operator has nothing open, queued or in flight, and its watch is quiet."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.op_stats()
            idle = stats["events_open"] == 0 and stats["queued"] == 0 and stats["in_flight"] == 0
            if idle and stats["watch_idle_s"] > 0.3:  # and kopf is not behind on the watch stream
                return stats
            if time.monotonic() > deadline:
                log(f"the operator did not settle in {timeout:.0f} s: {stats}")
                return stats
            await asyncio.sleep(0.05)

    # -- producing ---------------------------------------------------------------------------------

    async def create_event(self, name: str, type_: str, i: int, namespace: str | None = None) -> Created:
        created = await self.cluster.create(
            EVENTS, namespace or self.ns, name, {"type": type_, "data": event_data(i), "source": "/bench"}
        )
        if namespace in (None, self.ns):
            self.main_events += 1
        return Created(created["metadata"]["uid"], time.monotonic())

    async def burst(self, prefix: str, type_: str, n: int) -> tuple[float, dict[str, Created]]:
        """Create n events as fast as the API takes them; (start time, name -> Created)."""
        done: dict[str, Created] = {}

        def job(i: int) -> Callable[[], Awaitable[None]]:
            async def create() -> None:
                done[f"{prefix}-{i:06d}"] = await self.create_event(f"{prefix}-{i:06d}", type_, i)

            return create

        started = time.monotonic()
        await run_concurrently((job(i) for i in range(n)), CONCURRENT_CREATORS)
        return started, done

    async def paced(self, prefix: str, type_: str, n: int, rate: float) -> tuple[float, dict[str, Created]]:
        """Create n events at `rate` per second, each on its own schedule (a slow create delays none)."""
        done: dict[str, Created] = {}
        limit = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with limit:
                done[f"{prefix}-{i:06d}"] = await self.create_event(f"{prefix}-{i:06d}", type_, i)

        started = time.monotonic() + 0.02
        tasks = []
        for i in range(n):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        return started, done

    async def receipts(
        self, prefix: str, created: dict[str, Created], timeout: float
    ) -> dict[str, list[float]]:
        """Wait until every created event arrived under `prefix` (or the timeout); uid -> arrivals."""
        wanted = {c.uid for c in created.values()}
        deadline = time.monotonic() + timeout
        target = len(wanted)
        while True:
            if await self.rx_count(prefix) >= target or time.monotonic() > deadline:
                arrivals = {
                    uid: times for uid, times in (await self.rx_arrivals(prefix)).items() if uid in wanted
                }
                count = len(arrivals)
                if count >= target or time.monotonic() > deadline:
                    if count < target:
                        log(f"{target - count} of {target} events not received after {timeout:.0f} s")
                    return arrivals
            await asyncio.sleep(0.05)

    @staticmethod
    def latencies(created: dict[str, Created], arrivals: dict[str, list[float]]) -> list[float]:
        return [min(arrivals[c.uid]) - c.returned for c in created.values() if c.uid in arrivals]

    async def split(
        self, prefix: str, created: dict[str, Created], arrivals: dict[str, list[float]]
    ) -> dict[str, Any]:
        """Latency in two parts: create returned -> the operator's engine saw the ADDED watch event
        (API server and kopf), and that -> receipt (work queue, reconcile, HTTP)."""
        async with self.http.get(self.control + "/added", params={"prefix": prefix}) as response:
            seen = await response.json()
        watch = [seen[name] - c.returned for name, c in created.items() if name in seen]
        deliver = [
            min(arrivals[c.uid]) - seen[name]
            for name, c in created.items()
            if name in seen and c.uid in arrivals
        ]
        return {"watch": percentiles(watch), "deliver": percentiles(deliver)}

    async def wait_ready(self, namespace: str, names: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = {
                item["metadata"]["name"]
                for item in await self.cluster.list(SUBS, namespace)
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (item.get("status") or {}).get("conditions") or []
                )
            }
            if names <= ready:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"subscriptions not Ready after {timeout:.0f} s: {sorted(names - ready)[:5]}...")

    async def subscribe(
        self,
        name: str,
        path: str,
        types: list[str],
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        spec = {"url": self.rx + path, "eventTypes": types, **extra}
        await self.cluster.create(SUBS, namespace or self.ns, name, spec, labels=labels)

    # -- phases ------------------------------------------------------------------------------------

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

    async def start_operator(self, log_file: Any) -> None:
        self._operator_log = log_file
        await self.launch_operator()
        await self.subscribe("sink", "/sink", ["bench.load"])
        await self.wait_ready(self.ns, {"sink"}, 30)
        _, warm = await self.burst("warmup", "bench.load", 50)
        await self.receipts("/sink", warm, 30)
        await self.op_settled(30)
        rss = self.operator.memory_kib()["vmrss"] / 1024
        log(f"operator ready (pid {self.operator.pid}, RSS {rss:.0f} MB), 'sink' Ready, warmed up")

    async def launch_operator(self) -> float:
        """Start the operator process; returns the monotonic time it reported ready."""
        where = (
            ["--kubeconfig", self.s.kubeconfig]
            if self.s.kubeconfig
            else ["--server", self.cluster.connection.server]
        )
        circuit = (
            ("--circuit-after-failures", str(self.s.circuit_after_failures))
            if self.s.circuit_after_failures is not None
            else ()
        )
        namespaces = [arg for ns in (self.ns, self.ns_memory, self.ns_start) for arg in ("-n", ns)]
        self.operator = await asyncio.to_thread(
            procs.start, "operator", "benchmarks.operator_proc", *where, *namespaces,
            "--workers", str(self.s.workers), *circuit, log=self._operator_log,
        )  # fmt: skip
        self.control = self.operator.info["control"]
        deadline = time.monotonic() + 60
        while not (await self.op_stats()).get("ready"):
            if time.monotonic() > deadline or self.operator.process.poll() is not None:
                raise RuntimeError("the operator did not get ready; see its log")
            await asyncio.sleep(0.05)
        return time.monotonic()

    async def stop_operator(self) -> None:
        if self.operator is not None:
            await asyncio.to_thread(procs.stop, self.operator, 30)

    async def startup(self) -> None:
        await startup.run(self)

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
        else:  # a real cluster: what the operator's client sent, plus the producer's creates
            api_writes = stats_after["kube_writes"] - stats_before["kube_writes"] + n
            source = "operator client count + producer creates"
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
            per_event = sum(cpu.values()) / max(1, received)
            cores = os.cpu_count() or 1
            self.results["L_cpu"] = round(cores / per_event, 1)
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
        self.results["fanout_last_receipt_s"] = _median([r["last_receipt_s"] for r in reps])
        self.results["fanout_delivered_s"] = _median([r["delivered_s"] for r in reps])
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

    @property
    def helpers(self) -> dict[str, procs.Helper]:
        """Every process whose CPU is counted: the stand-in (if any), the receiver, the operator."""
        found = dict(self._helpers)
        if self.operator is not None:
            found["operator"] = self.operator
        return found


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def judge(results: dict[str, Any]) -> dict[str, Any]:
    verdicts = {}
    for metric, (op, bound, what) in TARGETS.items():
        value = results.get(metric)
        if metric == "api_writes_per_event" and value is not None:
            value = round(value, 2)  # the 0.001s are subscription health flushes (one per 5 s)
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        verdicts[metric] = {"value": value, "target": f"{op} {bound:g}", "met": met, "what": what}
    return verdicts


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def table(results: dict[str, Any]) -> str:
    rows = [
        ("L_create (creates/s, 32 concurrent)", results.get("L_create"), ""),
        ("L_status (status patches/s, 32 concurrent)", results.get("L_status"), ""),
        ("L_api = 1/(1/L_create + 1/L_status)", results.get("L_api"), ""),
        ("L_http project Sender (POST/s, 64 conc.)", results.get("L_http_sender"), ""),
        ("L_http plain aiohttp (POST/s, 64 conc.)", results.get("L_http_aiohttp"), ""),
        ("throughput (events/s, first create..last receipt)", results.get("throughput"), ""),
    ]
    for metric, verdict in results["targets"].items():
        rows.append(
            (
                f"{verdict['what']} [{metric}]",
                verdict["value"],
                f"{verdict['target']} {'met' if verdict['met'] else 'NOT MET'}",
            )
        )
    lat = results.get("latency_full") or {}
    hol = results.get("hol") or {}
    rows += [
        (
            "latency at full load p50/p95/p99 (ms)",
            f"{lat.get('p50_ms')}/{lat.get('p95_ms')}/{lat.get('p99_ms')}",
            "",
        ),
        ("half-rate p95 (ms)", (results.get("half_rate") or {}).get("p95_ms"), ""),
        (
            "healthy p99 unloaded / in storm (ms)",
            f"{results.get('hol_unloaded_p99_ms')} / {results.get('hol_storm_p99_ms')}",
            f"storm {hol.get('storm_attempts_per_s')} attempts/s",
        ),
        ("fan-out: last receipt (s)", results.get("fanout_last_receipt_s"), ""),
        ("operator CPU s per 1,000 deliveries", results.get("operator_cpu_s_per_1000"), ""),
        (
            "CPU s per 1,000 events, every process",
            " ".join(f"{k} {v}" for k, v in (results.get("helper_cpu_s_per_1000") or {}).items()),
            "",
        ),
        ("L_cpu = cores / CPU s per event, all processes", results.get("L_cpu"), "the machine's ceiling"),
        ("throughput / L_cpu", results.get("throughput_over_L_cpu"), ""),
        ("operator's own API writes per event", results.get("operator_writes_per_event"), ""),
        ("peak RSS under load (MB)", results.get("peak_rss_mb"), ""),
        ("events lost (all phases)", results.get("lost"), ""),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric':<{width}}  {'value':>14}  target", "-" * (width + 30)]
    lines += [f"{name:<{width}}  {value!s:>14}  {note}" for name, value, note in rows]
    return "\n".join(lines)


async def run(settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(settings.keep_logs or tempfile.mkdtemp(prefix="webhook-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    helpers: dict[str, procs.Helper] = {}
    with contextlib.ExitStack() as stack:
        logs = {
            name: stack.enter_context((workdir / f"{name}.log").open("wb"))
            for name in ("standin", "receiver", "operator")
        }
        if settings.kubeconfig:
            connection = connection_from_kubeconfig(settings.kubeconfig)
        else:
            helpers["standin"] = stack.enter_context(
                procs.running("standin", "benchmarks.standin_proc", log=logs["standin"])
            )
            connection = kopf.ConnectionInfo(server=helpers["standin"].info["url"], insecure=True)
        helpers["receiver"] = stack.enter_context(
            procs.running("receiver", "benchmarks.receiver_proc", log=logs["receiver"])
        )
        async with (
            Cluster(connection, standin=not settings.kubeconfig) as cluster,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http,
        ):
            bench = Benchmark(settings, cluster, helpers["receiver"].info["url"], http, workdir, helpers)
            if settings.kubeconfig:
                await cluster.check_crds()
            bench.ns = await cluster.create_namespace("webhook-bench-")
            bench.ns_memory, bench.ns_ceiling = f"{bench.ns}-mem", f"{bench.ns}-ceil"
            bench.ns_start = f"{bench.ns}-start"
            for namespace in (bench.ns_memory, bench.ns_ceiling, bench.ns_start):
                await cluster.ensure_namespace(namespace)
            log(f"namespaces {bench.ns}, {bench.ns_memory}, {bench.ns_ceiling}; logs in {workdir}")
            try:
                await bench.ceilings()
                await bench.http_ceiling()
                await bench.start_operator(logs["operator"])
                for phase in settings.phases:
                    await getattr(bench, phase)()
                final = await bench.op_stats()
                bench.results.setdefault("peak_rss_mb", round(final["vmhwm"] / 1024, 1))
                bench.results["operator_cpu_s_total"] = round(final["cpu_seconds"], 2)
            finally:
                if bench.operator is not None:
                    code = procs.stop(bench.operator, timeout=30)
                    bench.results["operator_exit_code"] = code
                if settings.kubeconfig:
                    for namespace in (bench.ns, bench.ns_memory, bench.ns_ceiling, bench.ns_start):
                        with contextlib.suppress(Exception):
                            await cluster.delete_namespace(namespace)
                    log("namespaces deleted")
    results = bench.results
    results["lost"] = (
        results.get("sustained_lost", 0)
        + (results.get("half_rate") or {}).get("lost", 0)
        + (results.get("hol") or {}).get("lost", 0)
        + results.get("fanout_lost", 0)
    )
    results["targets"] = judge(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["setup"] = {
        "api": "kubeconfig" if settings.kubeconfig else "stand-in",
        "version": __version__,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "loadavg_at_start": load_at_start,
        "settings": dataclasses.asdict(settings) | {"kubeconfig": bool(settings.kubeconfig)},
        "logs": str(workdir),
    }
    return results


def parse(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events in the sustained phase (default 2000; quick 200)")
    parser.add_argument(
        "--fanout", type=int, help="subscriptions one event fans out to (default 200; quick 20)"
    )
    parser.add_argument(
        "--storm", type=int, help="deliveries retrying in the head-of-line phase (default 1000)"
    )
    parser.add_argument(
        "--storm-max-delay",
        type=int,
        default=Settings.storm_max_delay,
        help="the broken endpoint's retry.maxDelaySeconds (Exponential from 1 s; default 10)",
    )
    parser.add_argument(
        "--memory", type=int, help="subscriptions and finished events for the memory reading (default 10000)"
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="run against this cluster (CRDs installed) in fresh namespaces, deleted afterwards",
    )
    parser.add_argument("--quick", action="store_true", help="a small run for the smoke test (~20 s)")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line on stdout")
    parser.add_argument("--workers", type=int, default=64, help="the operator's event workers (default 64)")
    parser.add_argument(
        "--circuit-after-failures",
        type=int,
        metavar="N",
        help="the operator's --circuit-after-failures (0: no circuit, every retry is sent)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="pyinstrument profile of the operator during the sustained phase (text; FILE.html)",
    )
    parser.add_argument("--logs", metavar="DIR", help="keep the helper processes' logs in DIR")
    parser.add_argument(
        "--phases",
        default=",".join(Settings.phases),
        help="run only these phases, in this order (default: all; the ceilings always run)",
    )
    args = parser.parse_args(argv)
    settings = Settings(
        quick=args.quick,
        json_only=args.json_only,
        kubeconfig=args.kubeconfig,
        workers=args.workers,
        circuit_after_failures=args.circuit_after_failures,
        profile=args.profile,
        keep_logs=args.logs,
        phases=tuple(p.strip() for p in args.phases.split(",") if p.strip()),
        storm_max_delay=args.storm_max_delay,
    )
    unknown = set(settings.phases) - set(Settings.phases)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; known: {', '.join(Settings.phases)}")
    if "half_rate" in settings.phases and "sustained" not in settings.phases:
        parser.error("half_rate runs at half of the sustained rate: it needs the sustained phase")
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK)
    for name in ("events", "fanout", "storm", "memory"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if settings.profile:
        settings.profile = str(Path(settings.profile).resolve())
    return settings


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    results = asyncio.run(run(settings))
    if not settings.json_only:
        print(table(results))
    print(json.dumps(results, separators=(",", ":")))
    return 0
